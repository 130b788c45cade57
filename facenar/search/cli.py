"""python -m facenar.search: NAR search on a proxy split; writes arch.json and the search record.

With no arguments it searches the built-in demo proxy with the `demo` preset (minutes on a CPU).
Under torchrun the shared-weight training is data-parallel (gloo on CPU, NCCL on GPUs).
"""
from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
from typing import Sequence

from data_tools.cli import UserError
from facenar.space.arch import BACKBONES, GRANULARITIES, parse_ops
from facenar.search.config import PRESETS, resolve_config

RUN_OPTIONS = ("out", "resume", "force", "device", "workers", "stop_after_epochs")


def parse_count(text: str) -> float:
    """'4.7G', '800M', '1.2e9' -> a number (multiply-adds)."""
    scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text.strip()[-1:].upper(), 1.0)
    number = text.strip()[:-1] if scale != 1.0 else text.strip()
    try:
        value = float(number) * scale
    except ValueError:
        raise UserError(f"--target-macs must be a number such as 4.7G or 800M, got {text!r}") from None
    if value <= 0:
        raise UserError(f"--target-macs must be positive, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m facenar.search", argument_default=argparse.SUPPRESS,
                                description="Neural Architecture Refinement: search one operator per block of an "
                                            "iresnet on a proxy split (defaults: the paper's settings; "
                                            "without --data: the demo proxy and the demo preset).")
    add = p.add_argument
    add("--data", help="proxy split folder (python -m facenar.prepare_proxy); default: built-in demo proxy")
    add("--preset", choices=sorted(PRESETS), help="base settings (default: demo without --data, else paper)")
    space = p.add_argument_group("search space")
    space.add_argument("--backbone", choices=sorted(BACKBONES), help="default iresnet50")
    space.add_argument("--width", type=float, help="channel multiplier (default 1.0)")
    space.add_argument("--input-size", type=int, help="input side in pixels (default 112)")
    space.add_argument("--embedding-size", type=int, help="default 512")
    space.add_argument("--ops", type=parse_ops,
                       help="comma-separated candidates (default conv3x3,dwconv3x3,max3x3,avg3x3)")
    space.add_argument("--granularity", choices=sorted(GRANULARITIES), help="block (default) or conv")
    shared = p.add_argument_group("shared-weight training")
    shared.add_argument("--epochs", type=int, help="default 150 (4 SGDR cycles)")
    shared.add_argument("--pretrain-epochs", type=int,
                        help="PreTrain: uniform sampling, controller frozen (default 10)")
    shared.add_argument("--t0", type=float, help="SGDR first cycle in epochs (default 10)")
    shared.add_argument("--t-mult", type=float, help="SGDR cycle growth (default 2)")
    shared.add_argument("--lr-max", type=float, help="default 0.1")
    shared.add_argument("--lr-min", type=float, help="default 1e-4")
    shared.add_argument("--momentum", type=float, help="default 0.9 (Nesterov)")
    shared.add_argument("--weight-decay", type=float, help="default 5e-4")
    shared.add_argument("--batch-size", type=int, help="per process (default 128)")
    shared.add_argument("--steps-per-epoch", type=int, help="cap minibatches per epoch (default 0 = full pass)")
    shared.add_argument("--augment", choices=["flip", "strong", "none"], help="default flip")
    shared.add_argument("--margin-s", type=float, help="ArcFace scale (default 64)")
    shared.add_argument("--margin-m", type=float, help="ArcFace angular margin (default 0.5)")
    shared.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], help="CUDA autocast (auto = bf16)")
    ctrl = p.add_argument_group("controller")
    ctrl.add_argument("--controller-steps", type=int, help="REINFORCE steps per epoch (default 50)")
    ctrl.add_argument("--controller-samples", type=int, help="architectures per step (default 20)")
    ctrl.add_argument("--controller-lr", type=float, help="Adam lr, beta1 = 0 (default 1e-3)")
    ctrl.add_argument("--entropy-weight", type=float, help="default 1e-4")
    ctrl.add_argument("--baseline-decay", type=float, help="default 0.99")
    ctrl.add_argument("--tanh-constant", type=float, help="default 1.5")
    ctrl.add_argument("--temperature", type=float, help="logit temperature (default none)")
    ctrl.add_argument("--val-batch", type=int, help="proxy-val images per reward (default 128)")
    ctrl.add_argument("--reward-bn", choices=["batch", "eval"],
                      help="BN statistics when scoring: batch (default, as ENAS) or eval (running averages)")
    ctrl.add_argument("--derive-samples", type=int, help="sampled architectures scored at the end (default 100)")
    ctrl.add_argument("--random-samples", type=int, help="random architectures for comparison (default 20)")
    cost = p.add_argument_group("cost-aware reward (optional): acc * (cost/target)**w above the target")
    cost.add_argument("--cost", choices=["macs", "latency"], help="default macs")
    cost.add_argument("--target-macs", type=parse_count, help="e.g. 4.7G")
    cost.add_argument("--target-latency", type=float, help="milliseconds, with --cost latency")
    cost.add_argument("--latency-table", help="JSON from python -m facenar.arch latency --out")
    cost.add_argument("--cost-weight", type=float, help="w < 0 (default -0.5)")
    add("--seed", type=int, help="default 0")
    run = p.add_argument_group("run")
    run.add_argument("--out", help="run directory (default runs/search-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    run.add_argument("--force", action="store_true", help="reuse a non-empty --out, deleting its search outputs")
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    run.add_argument("--workers", type=int, help="DataLoader workers (default 0 on CPU, 4 on CUDA)")
    run.add_argument("--stop-after-epochs", type=int, help=argparse.SUPPRESS)  # simulates a kill in tests
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    from facenar.search.engine import run_search

    options = {k: args.get(k) for k in RUN_OPTIONS}
    explicit = {k: v for k, v in args.items() if k not in RUN_OPTIONS}
    if options["resume"] and options["out"] and Path(options["out"]) != Path(options["resume"]):
        raise UserError("give either --out (a new run) or --resume RUN_DIR (continue that run), not both")
    if options["workers"] is not None and options["workers"] < 0:
        raise UserError(f"--workers must be >= 0, got {options['workers']}")
    out = options["resume"] or options["out"] or f"runs/search-{datetime.now():%Y%m%d-%H%M%S}"
    run_search(lambda: resolve_config(explicit, options["resume"]), out, resume=bool(options["resume"]),
               force=bool(options["force"]), device=options["device"] or "auto", workers=options["workers"],
               stop_after_epochs=options["stop_after_epochs"])
    return 0

