"""python -m facenar.arch: inspect architectures of the NAR search space.

  python -m facenar.arch stats FILE.json | --backbone iresnet50 --codes 0,0,2,... [--num-classes N] [--json]
  python -m facenar.arch latency [--backbone ... --width ... --backend torch|onnxruntime --out T.json]
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from facenar_runtime.atomic import write_text_atomic
from facenar_runtime.cli import number, run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import check_outputs
from facenar.space.arch import BACKBONES, GRANULARITIES, Arch, parse_codes, parse_ops, RANGES as ARCH_RANGES
from facenar_runtime import limits
from facenar.dist import device_option, resolve_device
from facenar.space.ops import PAPER_OPS


def _space_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default="iresnet50", choices=sorted(BACKBONES))
    parser.add_argument("--width", type=ARCH_RANGES["width"], default=1.0, help="channel multiplier (default 1.0)")
    parser.add_argument("--input-size", type=ARCH_RANGES["input_size"], default=112, help="input height = width (default 112)")
    parser.add_argument("--embedding-size", type=ARCH_RANGES["embedding_size"],
                        help="default 512 for an iresnet, the pooled feature size (512 x width) for a resnet")
    parser.add_argument("--granularity", default="block", choices=sorted(GRANULARITIES))
    parser.add_argument("--ops", "--candidates", dest="candidates", default=",".join(PAPER_OPS),
                        help="comma-separated candidate operators (codes index this list)")


def _space_kwargs(args) -> dict:
    return dict(candidates=parse_ops(args.candidates), width=args.width, input_size=args.input_size,
                embedding_size=args.embedding_size, granularity=args.granularity)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m facenar.arch",
                                     description="Inspect architectures of the NAR search space.")
    sub = parser.add_subparsers(dest="command", required=True)
    stats = sub.add_parser("stats", help="parameters and multiply-adds per slot vs the baseline")
    stats.add_argument("file", nargs="?", help="architecture JSON (else use --backbone/--codes)")
    stats.add_argument("--codes", help="comma-separated operator codes, one per slot")
    _space_options(stats)
    stats.add_argument("--num-classes", type=number(int, min=0, max=limits.IDENTITIES), default=0,
                       help="count a Linear(embedding -> N) classifier too, as published ResNet figures do "
                            "(1000 for ImageNet; default 0: the network alone)")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    lat = sub.add_parser("latency", help="time every candidate op at every slot shape on this machine")
    _space_options(lat)
    lat.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    lat.add_argument("--device", type=device_option, default="cpu", help="auto, cpu, cuda or cuda:N (default cpu)")
    lat.add_argument("--batch", type=number(int, min=1, max=limits.BATCH), default=1)
    lat.add_argument("--repeats", type=number(int, min=1, max=limits.REPEATS), default=20)
    lat.add_argument("--out", help="write the table as JSON here")
    lat.add_argument("--force", action="store_true", help="overwrite --out")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "stats":
        from facenar.space.cost import arch_stats, format_stats

        if args.file and args.codes:
            raise UserError("give either an architecture file or --codes, not both")
        if args.file:
            arch = Arch.load(args.file)
        elif args.codes:
            arch = Arch(args.backbone, parse_codes(args.codes), **_space_kwargs(args))
        else:
            raise UserError("give an architecture JSON file or --codes")
        stats = arch_stats(arch, args.num_classes)
        print(json.dumps(stats, indent=2) if args.json else format_stats(stats))
        return 0
    from facenar.space.latency import format_latency, measure_latency

    check_outputs(args.force, files={"--out": args.out})
    table = measure_latency(args.backbone, backend=args.backend, batch=args.batch, repeats=args.repeats,
                            device=resolve_device(args.device), **_space_kwargs(args))
    print(format_latency(table))
    if args.out:
        write_text_atomic(args.out, json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
