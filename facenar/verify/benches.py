"""10-fold face verification on insightface `.bin` pair files (LFW, CFP-FP, AgeDB-30, ...).

The protocol (facenar.verify.metrics) reproduces insightface's numbers; this module feeds it: load and
decode each bench once (cached, because training verifies every N steps), embed with flip,
report (every metric registered in facenar.verify.report). Accepts facenar checkpoints and
insightface-layout ONNX models.
The command line (python -m facenar.verify) is facenar/verify/cli.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from data_tools.binfile import load_bin
from facenar_runtime.errors import UserError
from facenar_runtime.paths import facenar_home
from facenar.verify import metrics
from facenar.verify.embed import OnnxEmbedder, TorchEmbedder, decode_images, embed_images
from facenar.verify.report import PairScores, compute_report

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
    metrics: dict               # the report: {name: value} of every registered report metric
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


def check_embeddings(raw: np.ndarray, bench: Bench) -> None:
    """Refuse degenerate embeddings instead of scoring them: NaN ones would all sit at one distance
    and zero ones at none, and either gives a plausible-looking accuracy ("50.00", "VAL 100.00")."""
    broken = ~np.isfinite(raw).all(axis=1)
    zero = ~broken & ~np.any(raw, axis=1)
    if broken.any() or zero.any():
        counts = [f"{n} non-finite (NaN/inf)" for n in [int(broken.sum())] if n] + \
                 [f"{n} of zero length" for n in [int(zero.sum())] if n]
        raise UserError(f"bench {bench.name!r} ({bench.path}): the model gave {' and '.join(counts)} of "
                        f"{len(raw)} embeddings; no accuracy can be measured (a diverged checkpoint or a "
                        "broken ONNX model?)")


def evaluate_bench(embedder, bench: Bench, batch_size: int = 256, flip: bool = True) -> BenchResult:
    """Embed a bench (optionally + mirrored images), run the protocol on it and compute the report."""
    plain, mirrored = embed_images(embedder, bench.images, batch_size, flip, desc=bench.name)
    raw = plain.astype(np.float64)
    norms = np.linalg.norm(raw, axis=1)
    if mirrored is not None:
        raw = raw + mirrored.astype(np.float64)
        norms = np.r_[norms, np.linalg.norm(mirrored.astype(np.float64), axis=1)]
    check_embeddings(raw, bench)
    embeddings = metrics.l2_normalize(raw)
    distances = metrics.pair_distances(embeddings)
    result = metrics.evaluate_distances(distances, bench.issame, name=bench.name)
    result["xnorm"] = float(np.mean(norms))        # insightface: over plain and mirrored outputs
    report = compute_report(PairScores(distances, bench.issame, result))
    return BenchResult(report, embeddings, bench.issame, distances)


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

    `all` is every .bin file in the data folder, by name. Without a data folder, names refer to
    the built-in demo data (generated on first use).
    """
    if spec.strip() == "all":
        if data_dir is None:
            from data_tools.demo import ensure_demo

            data_dir = ensure_demo()
        found = sorted(Path(data_dir).glob("*.bin"))
        if not found:
            raise UserError(f"--bench all: no .bin files in {data_dir}")
        return {path.stem: path for path in found}
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


def load_embedder(model_path: str | Path, device: str, compile: str = "off", channels_last: bool = False):
    """A checkpoint (facenar.checkpoint) or an .onnx file -> embedder (the speed options: PyTorch only)."""
    path = Path(model_path)
    if not path.is_file():
        raise UserError(f"--model {path} not found")
    if path.suffix.lower() == ".onnx":
        return OnnxEmbedder(path, device=device)
    from facenar.checkpoint import load_model

    # loaded on the CPU: a training checkpoint also holds Partial FC's centres and momentum, which would
    # otherwise all land on the GPU; only the network moves there
    model, arch, _ = load_model(path, map_location="cpu")
    return TorchEmbedder(model.float().eval().to(device), device=device, input_size=arch.input_size, compile=compile,
                         channels_last=channels_last)
