"""10-fold face verification on insightface `.bin` pair files (LFW, CFP-FP, AgeDB-30, ...).

The protocol (facenar.metrics) reproduces insightface's numbers; this module feeds it: load and
decode each bench once (cached, because training verifies every N steps), embed with flip,
report. Accepts facenar checkpoints and insightface-layout ONNX models.

CLI: python -m facenar.verify --bench lfw,cfp_fp,agedb_30 --data DIR --model PATH
     [--batch-size 256] [--no-flip] [--json F] [--csv F] [--plot F] [--embeddings F.npz]
     [--device auto|cpu|cuda] [--workers N] [--force]
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from data_tools.atomic import atomic_open, check_writable, write_text_atomic
from data_tools.binfile import load_bin
from data_tools.cli import UserError, run_cli
from data_tools.paths import facenar_home
from facenar import metrics
from facenar.embed import OnnxEmbedder, TorchEmbedder, decode_images, embed_images, resolve_device

COLUMNS = ("accuracy", "std", "threshold", "val", "val_std", "far", "xnorm", "auc", "pairs")
_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}   # decoded images, issame
_CACHE_SIZE = 8


@dataclass
class Bench:
    """One pair file, decoded: images [2P, S, S, 3] uint8 RGB, pair i = images 2i and 2i+1."""
    name: str
    path: Path
    images: np.ndarray
    issame: np.ndarray


@dataclass
class BenchResult:
    metrics: dict
    embeddings: np.ndarray      # L2-normalised (flip-summed) embeddings, float64
    issame: np.ndarray
    distances: np.ndarray


def load_bench(name: str, path: str | Path, input_size: int, workers: int | None = None) -> Bench:
    """Read and decode a .bin once per (file version, input size); later calls hit the cache."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise UserError(f"bench {name!r}: {path} not found; give --data DIR holding {path.name}, "
                        "or a path to a .bin file") from None
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, input_size)
    if key not in _CACHE:
        blobs, issame = load_bin(path)
        if len(issame) < metrics.NUM_FOLDS:
            raise UserError(f"{path}: only {len(issame)} pairs; 10-fold verification needs at least "
                            f"{metrics.NUM_FOLDS}")
        images = decode_images(blobs, input_size, where=str(path), workers=workers)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (images, issame)
    return Bench(name, path, *_CACHE[key])


def evaluate_bench(embedder, bench: Bench, batch_size: int = 256, flip: bool = True) -> BenchResult:
    """Embed a bench (optionally + mirrored images) and run the protocol on it."""
    plain, mirrored = embed_images(embedder, bench.images, batch_size, flip, desc=bench.name)
    raw = plain.astype(np.float64)
    norms = np.linalg.norm(raw, axis=1)
    if mirrored is not None:
        raw = raw + mirrored.astype(np.float64)
        norms = np.r_[norms, np.linalg.norm(mirrored.astype(np.float64), axis=1)]
    embeddings = metrics.l2_normalize(raw)
    distances = metrics.pair_distances(embeddings)
    result = metrics.evaluate_distances(distances, bench.issame, name=bench.name)
    result["xnorm"] = float(np.mean(norms))        # insightface: over plain and mirrored outputs
    return BenchResult({key: result[key] for key in COLUMNS}, embeddings, bench.issame, distances)


def verify_benches(embedder, benches: Mapping[str, str | Path], batch_size: int = 256, flip: bool = True,
                   workers: int | None = None) -> dict[str, BenchResult]:
    """Full results (metrics, embeddings, distances) for each named .bin file."""
    return {name: evaluate_bench(embedder, load_bench(name, path, embedder.input_size, workers),
                                 batch_size, flip)
            for name, path in benches.items()}


def verify_model(model, benches: Mapping[str, str | Path], batch_size: int = 256, flip: bool = True,
                 device: str = "cpu", input_size: int | None = None) -> dict[str, dict]:
    """Metrics per bench for a PyTorch face network (the training loop's entry point).

    The model runs in eval mode and gets its previous train/eval mode back afterwards.
    """
    from facenar.checkpoint import unwrap

    net = unwrap(model)
    was_training = net.training
    net.eval()
    try:
        embedder = TorchEmbedder(net, device=device, input_size=input_size)
        return {name: result.metrics
                for name, result in verify_benches(embedder, benches, batch_size, flip).items()}
    finally:
        net.train(was_training)


# ----------------------------------------------------------------------------- CLI helpers

def resolve_benches(spec: str, data_dir: str | Path | None) -> dict[str, Path]:
    """`lfw,cfp_fp` -> {name: DIR/name.bin}; entries ending in .bin are paths named after the file.

    Without a data folder, names refer to the built-in demo data (generated on first use).
    """
    benches: dict[str, Path] = {}
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        if entry.endswith(".bin"):
            name, path = Path(entry).stem, Path(entry)
        else:
            if data_dir is None:
                from data_tools.demo import ensure_demo

                data_dir = ensure_demo()
            name, path = entry, Path(data_dir) / f"{entry}.bin"
        if name in benches:
            raise UserError(f"--bench names {name!r} twice")
        benches[name] = path
    if not benches:
        raise UserError("--bench is empty; give names like lfw,cfp_fp,agedb_30 or paths to .bin files")
    return benches


def find_default_model(search: Sequence[Path] | None = None) -> Path:
    """The newest runs/*/best.pt (else runs/*/last.pt) under the current folder and FACENAR_HOME."""
    roots = list(search) if search is not None else [Path.cwd(), facenar_home()]
    for name in ("best.pt", "last.pt"):
        found = [p for root in roots for p in Path(root).glob(f"runs/*/{name}") if p.is_file()]
        if found:
            return max(found, key=lambda p: p.stat().st_mtime_ns)
    raise UserError("no --model given and no trained checkpoint found; train one with "
                    "`python -m facenar.train --preset demo` (writes runs/<name>/best.pt), or pass "
                    "--model CHECKPOINT.pt or --model MODEL.onnx")


def load_embedder(model_path: str | Path, device: str):
    """A checkpoint (facenar.checkpoint) or an .onnx file -> embedder."""
    path = Path(model_path)
    if not path.is_file():
        raise UserError(f"--model {path} not found")
    if path.suffix.lower() == ".onnx":
        return OnnxEmbedder(path, device=device)
    from facenar.checkpoint import load_model

    model, arch, _ = load_model(path, map_location=device)
    return TorchEmbedder(model.float().eval(), device=device, input_size=arch.input_size)


def _cell(value, digits: int, scale: float = 1.0) -> str:
    return "n/a" if math.isnan(value) else f"{value * scale:.{digits}f}"


def format_table(results: Mapping[str, dict]) -> str:
    """One row per bench; accuracy and VAL in percent as insightface prints them."""
    header = ("bench", "pairs", "accuracy %", "threshold", "VAL@FAR=1e-3 %", "FAR", "AUC", "XNorm")
    rows = [header]
    for name, m in results.items():
        rows.append((name, str(m["pairs"]),
                     f"{_cell(m['accuracy'], 2, 100)} +- {_cell(m['std'], 2, 100)}",
                     _cell(m["threshold"], 3),
                     "n/a" if math.isnan(m["val"]) else f"{_cell(m['val'], 2, 100)} +- {_cell(m['val_std'], 2, 100)}",
                     "n/a" if math.isnan(m["far"]) else f"{m['far']:.2e}",
                     _cell(m["auc"], 4), _cell(m["xnorm"], 3)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    return "\n".join(lines)


def _jsonable(m: dict) -> dict:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}


def write_json(path, results: Mapping[str, dict]) -> None:
    write_text_atomic(path, json.dumps({n: _jsonable(m) for n, m in results.items()}, indent=2) + "\n")


def write_csv(path, results: Mapping[str, dict]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("bench", *COLUMNS))
    for name, m in results.items():
        writer.writerow((name, *("" if m[k] is None or (isinstance(m[k], float) and math.isnan(m[k]))
                                 else repr(m[k]) for k in COLUMNS)))
    write_text_atomic(path, buffer.getvalue())


def write_plot(path, results: Mapping[str, BenchResult]) -> None:
    """ROC curves (TAR against FAR, log FAR axis) of every bench on one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for name, result in results.items():
        if math.isnan(result.metrics["auc"]):
            continue                                # one class only: no ROC curve
        fpr, tpr = metrics.roc_curve(result.distances, result.issame)
        ax.plot(np.maximum(fpr, 1e-4), tpr, label=f"{name} (AUC {result.metrics['auc']:.4f})")
    ax.set(xscale="log", xlim=(1e-4, 1), ylim=(0, 1.01), xlabel="FAR (false accept rate)",
           ylabel="TAR (true accept rate)", title="Verification ROC")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def write_embeddings(path, results: Mapping[str, BenchResult]) -> None:
    arrays = {}
    for name, result in results.items():
        arrays[f"{name}_embeddings"] = result.embeddings.astype(np.float32)
        arrays[f"{name}_issame"] = result.issame
    with atomic_open(path, "wb") as handle:
        np.savez(handle, **arrays)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m facenar.verify",
                                description="10-fold verification accuracy (insightface protocol) on .bin pair files.")
    p.add_argument("--bench", default="lfw,cfp_fp,agedb_30",
                   help="comma-separated names (DIR/NAME.bin) or .bin paths (default lfw,cfp_fp,agedb_30)")
    p.add_argument("--data", help="folder holding the .bin files (default: the built-in demo data)")
    p.add_argument("--model", help="facenar checkpoint (.pt) or insightface-layout .onnx "
                                   "(default: newest runs/*/best.pt)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--no-flip", action="store_true", help="embed plain images only (no flip sum)")
    p.add_argument("--json", help="write the metrics as JSON")
    p.add_argument("--csv", help="write the metrics as CSV")
    p.add_argument("--plot", help="write ROC curves (PNG)")
    p.add_argument("--embeddings", help="write normalised embeddings + issame per bench (.npz)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--workers", type=int, default=None, help="image-decoding threads (default min(8, CPUs))")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    outputs = [o for o in (args.json, args.csv, args.plot, args.embeddings) if o]
    for out in outputs:
        check_writable(out, args.force)
    if args.workers is not None and args.workers < 1:
        raise UserError(f"--workers must be at least 1 (got {args.workers})")
    benches = resolve_benches(args.bench, args.data)
    model_path = args.model
    if model_path is None:
        model_path = find_default_model()
        print(f"using the newest trained checkpoint: {model_path}", file=sys.stderr)
    device = resolve_device(args.device)
    embedder = load_embedder(model_path, device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = verify_benches(embedder, benches, args.batch_size, not args.no_flip, args.workers)
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)
    table = {name: r.metrics for name, r in results.items()}
    print(format_table(table))
    if args.json:
        write_json(args.json, table)
    if args.csv:
        write_csv(args.csv, table)
    if args.plot:
        write_plot(args.plot, results)
    if args.embeddings:
        write_embeddings(args.embeddings, results)
    for out in outputs:
        print(f"wrote {os.fspath(out)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_cli(main)
