"""python -m facenar.verify: 10-fold verification accuracy on insightface .bin files, or IJB-B / IJB-C.

  python -m facenar.verify --bench lfw,cfp_fp,agedb_30|all --data DIR --model PATH
     [--batch-size 256] [--no-flip] [--json F] [--csv F] [--plot F] [--embeddings F.npz]
     [--device auto|cpu|cuda] [--workers N] [--force]
  python -m facenar.verify --ijb [DIR] [--target IJBC|IJBB] --model PATH [--no-norm-score]
     [--no-detector-score] [--no-flip] [--fars 1e-6,...,1e-1] [--no-1n] [--json F] [--scores F.npy]
     [--plot F] [--cache F.npz] (docs/guides/ijb.md)
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
from typing import Mapping, Sequence

import numpy as np

from facenar_runtime.atomic import atomic_open, write_text_atomic
from facenar_runtime.cli import number
from facenar_runtime.outputs import check_outputs
from facenar_runtime import limits
from facenar.verify import metrics, ijb_metrics
from facenar_runtime.errors import UserError
from facenar.verify.embed import default_workers
from facenar.verify.benches import BenchResult, find_default_model, load_embedder, resolve_benches, verify_benches
from facenar.verify.report import REPORT_METRICS, table_columns
from facenar.dist import device_option, resolve_device
from facenar.speed import add_speed_options


def format_table(results: Mapping[str, dict]) -> str:
    """One row per bench, one column per report metric with a table column (accuracy and VAL in percent
    as insightface prints them)."""
    columns = table_columns()
    header = ("bench", *(metric.header for _, metric in columns))
    rows = [header] + [(name, *(metric.cell(m) for _, metric in columns)) for name, m in results.items()]
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
    columns = REPORT_METRICS.names()
    writer.writerow(("bench", *columns))
    for name, m in results.items():
        writer.writerow((name, *("" if m[k] is None or (isinstance(m[k], float) and math.isnan(m[k]))
                                 else repr(m[k]) for k in columns)))
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
                                description="10-fold verification accuracy (insightface protocol) on .bin pair "
                                            "files, or IJB-B / IJB-C 1:1 and 1:N (--ijb).",
                                epilog="The .bin report (table, --json, --csv) holds one value per bench of each "
                                       "metric registered in facenar.verify.report (rates as fractions in [0, 1]): "
                                       + "; ".join(f"{name}: {summary}"
                                                   for name, summary in REPORT_METRICS.summaries().items()) + ".")
    p.add_argument("--bench", default="lfw,cfp_fp,agedb_30",
                   help="comma-separated names (DIR/NAME.bin) or .bin paths, or all (every .bin in --data) "
                        "(default lfw,cfp_fp,agedb_30)")
    p.add_argument("--data", help="folder holding the .bin files (default: the built-in demo data)")
    p.add_argument("--model", help="facenar checkpoint (.pt) or insightface-layout .onnx "
                                   "(default: newest runs/*/best.pt)")
    p.add_argument("--batch-size", type=number(int, min=1, max=limits.BATCH), default=256)
    p.add_argument("--no-flip", action="store_true", help="embed plain images only (no flip sum)")
    p.add_argument("--json", help="write the report as JSON (null: undefined)")
    p.add_argument("--csv", help="write the report as CSV (empty: undefined)")
    p.add_argument("--plot", help="write ROC curves (PNG)")
    p.add_argument("--embeddings", help="write normalised embeddings + issame per bench (.npz)")
    p.add_argument("--device", type=device_option, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--workers", type=number(int, min=1, max=limits.WORKERS), default=None,
                   help="image-decoding threads (--ijb: decode+align processes) (default min(8, CPUs))")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    ijb = p.add_argument_group("IJB-B / IJB-C (docs/guides/ijb.md)")
    ijb.add_argument("--ijb", nargs="?", const="", metavar="DIR",
                     help="evaluate on the IJB release in DIR (loose_crop/ + meta/); no DIR: the synthetic demo")
    ijb.add_argument("--target", choices=("IJBC", "IJBB"), type=str.upper,
                     help="which release (default: from the meta file names)")
    ijb.add_argument("--no-norm-score", action="store_true", help="L2-normalise each image feature before "
                     "pooling (insightface's N0; default N1 keeps the norm)")
    ijb.add_argument("--no-detector-score", action="store_true",
                     help="do not weight images by their faceness score (D0)")
    ijb.add_argument("--fars", type=far_list, default=ijb_metrics.FARS,
                     help="comma-separated FARs for the TAR table (default 1e-6,...,1e-1)")
    ijb.add_argument("--no-1n", action="store_true", help="skip 1:N identification (no 1N csv files needed)")
    ijb.add_argument("--scores", help="write the template-pair scores (.npy, pair-file order)")
    ijb.add_argument("--cache", help="embedding cache (default: beside --json/--scores, else in FACENAR_HOME)")
    add_speed_options(p, "the embedding network (PyTorch checkpoints)")
    return p


def far_list(text: str) -> tuple[float, ...]:
    """`1e-4,1e-3` -> (0.0001, 0.001); each FAR in (0, 1]."""
    parse = number(float, gt=0, max=1)
    fars = tuple(parse(part) for part in text.split(",") if part.strip())
    if not fars:
        raise argparse.ArgumentTypeError("give at least one FAR, e.g. 1e-4")
    return fars


def _run_ijb(args, model_path) -> int:
    from facenar.verify import ijb

    device = resolve_device(args.device)
    ijb.run(args.ijb or None, model_path, lambda: load_embedder(model_path, device), target=args.target,
            switches=ijb.Switches(not args.no_norm_score, not args.no_detector_score, not args.no_flip),
            fars=args.fars, one_to_n=not args.no_1n, json_path=args.json, scores_path=args.scores,
            plot_path=args.plot, cache=args.cache, batch_size=args.batch_size,
            workers=args.workers or default_workers(), force=args.force)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ijb is None and (args.scores or args.cache):
        raise UserError("--scores and --cache belong to --ijb")
    if args.ijb is not None:
        if args.csv or args.embeddings or args.data:
            raise UserError("--csv, --embeddings and --data belong to the .bin benches; --ijb takes its own folder")
        model_path = args.model or find_default_model()
        return _run_ijb(args, model_path)
    outputs = {"--json": args.json, "--csv": args.csv, "--plot": args.plot, "--embeddings": args.embeddings}
    benches = resolve_benches(args.bench, args.data)
    model_path = args.model
    if model_path is None:
        model_path = find_default_model()
        print(f"using the newest trained checkpoint: {model_path}", file=sys.stderr)
    # every output is checked before the (long) embedding, so results are never computed and then lost
    check_outputs(args.force, files=outputs, inputs={"--model": model_path, "--data": args.data,
                                                     **{f"--bench {name}": path for name, path in benches.items()}})
    device = resolve_device(args.device)
    embedder = load_embedder(model_path, device, args.compile, args.channels_last)
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
    for out in filter(None, outputs.values()):
        print(f"wrote {os.fspath(out)}", file=sys.stderr)
    return 0

