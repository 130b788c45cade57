"""python -m facenar.search: NAR search on a proxy split; writes arch.json and the search record.

With no arguments it searches the built-in demo proxy with the `demo` preset (minutes on a CPU).
Under torchrun the shared-weight training is data-parallel (gloo on CPU, NCCL on GPUs).
"""
from __future__ import annotations

import argparse
import functools
from typing import Sequence

from facenar_runtime.cli import number
from facenar_runtime.errors import UserError
from facenar.config import HELP_EPILOG, add_option
from facenar.rundir import run_folder
from facenar.search.config import PRESETS, SPACES, SearchConfig, resolve_config
from facenar_runtime import limits
from facenar.dist import device_option
from facenar.speed import COMPILE_MODES
from facenar.space.arch import BACKBONES, GRANULARITIES, parse_ops
from facenar.space.ops import space_ops
from facenar.tasks.base import TASKS, task_help

# where a run goes, not what it computes (never stored in config.json)
RUN_OPTIONS = ("out", "resume", "force", "stop_after_epochs")


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
    # SUPPRESS: only options actually given reach the config, so presets and resumed runs keep theirs
    p = argparse.ArgumentParser(prog="python -m facenar.search", argument_default=argparse.SUPPRESS,
                                description="Neural Architecture Refinement: search one operator per block of an "
                                            "iresnet on a proxy split (defaults: the paper's settings; "
                                            "without --data: the demo proxy and the demo preset).",
                                epilog=HELP_EPILOG)

    add = functools.partial(add_option, config=SearchConfig)

    add(p, "--task", task_help(), choices=TASKS.names())
    add(p, "--data", f"{task_help('search_data_help')}; default: the task's demo data")
    p.add_argument("--preset", choices=sorted(PRESETS), help="base settings (default: demo without --data, else "
                                                              "paper; with --task T, T's demo/paper)")
    space = p.add_argument_group("search space")
    add(space, "--space", "; ".join(f"{name}: {text}" for name, text in SPACES.summaries().items()),
        choices=SPACES.names())
    add(space, "--backbone", "", choices=sorted(BACKBONES))
    add(space, "--width", "channel multiplier")
    add(space, "--input-size", "input side in pixels")
    add(space, "--embedding-size", "")
    add(space, "--ops", f"comma-separated candidates of {', '.join(space_ops('nar'))}", type=parse_ops)
    add(space, "--granularity", "block: one slot per block; conv: one per 3x3 conv", choices=sorted(GRANULARITIES))
    enas = p.add_argument_group("ENAS macro space (--space enas)")
    add(enas, "--layers", "layers L")
    add(enas, "--channels", "channels C, even")
    add(enas, "--skip-weight", "skip penalty weight, 0 = off (Fig. 1)")
    add(enas, "--skip-target", "skip penalty's target probability")
    shared = p.add_argument_group("shared-weight training")
    add(shared, "--epochs", "")
    add(shared, "--pretrain-epochs", "PreTrain: uniform sampling, controller frozen")
    add(shared, "--t0", "SGDR first cycle in epochs")
    add(shared, "--t-mult", "SGDR cycle growth")
    add(shared, "--lr", "SGDR peak learning rate (alias --lr-max)", "--lr-max")
    add(shared, "--lr-min", "SGDR floor")
    add(shared, "--lr-scale", "linear: lr and lr-min x the number of processes (the presets are one-process "
                              "recipes); none: the same lr for any global batch", choices=["linear", "none"])
    add(shared, "--momentum", "Nesterov momentum")
    add(shared, "--weight-decay", "")
    add(shared, "--batch-size", "per process")
    add(shared, "--steps-per-epoch", "cap minibatches per epoch, 0 = full pass")
    add(shared, "--augment", "", choices=["flip", "strong", "none"])
    add(shared, "--scale", "ArcFace logit scale s (alias --margin-s)", "--margin-s")
    add(shared, "--margin-m2", "ArcFace angular margin (alias --margin-m)", "--margin-m", dest="m2")
    add(shared, "--amp", "CUDA autocast (auto = bf16 where native, Ampere on; else fp16)",
        choices=["auto", "bf16", "fp16", "off"])
    ctrl = p.add_argument_group("controller")
    add(ctrl, "--controller-steps", "REINFORCE steps per epoch")
    add(ctrl, "--controller-samples", "architectures per step")
    add(ctrl, "--controller-lr", "Adam lr, beta1 = 0")
    add(ctrl, "--entropy-weight", "")
    add(ctrl, "--baseline-decay", "")
    add(ctrl, "--tanh-constant", "")
    add(ctrl, "--temperature", "logit temperature (default none)")
    add(ctrl, "--val-batch", "proxy-val images per reward")
    add(ctrl, "--reward-bn", "BN statistics when scoring: batch (as ENAS) or eval (running averages)",
        choices=["batch", "eval"])
    add(ctrl, "--derive-samples", "sampled architectures scored at the end")
    add(ctrl, "--random-samples", "random architectures for comparison")
    cost = p.add_argument_group("cost-aware reward (optional): acc * (cost/target)**w above the target")
    add(cost, "--cost", "", choices=["macs", "latency"])
    add(cost, "--target-macs", "e.g. 4.7G", type=parse_count)
    add(cost, "--target-latency", "milliseconds, with --cost latency")
    add(cost, "--latency-table", "JSON from python -m facenar.arch latency --out")
    add(cost, "--cost-weight", "w < 0")
    add(p, "--seed", "")
    run = p.add_argument_group("run")
    run.add_argument("--out", help="run directory (default runs/search-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    run.add_argument("--force", action="store_true", help="replace a finished run in --out (only a folder facenar wrote)")
    add(run, "--device", "auto, cpu, cuda or cuda:N", type=device_option)
    add(run, "--workers", "DataLoader workers per process (default 0 on CPU; on CUDA the cores per GPU process "
                          "less one, at most 8)")
    add(run, "--compile", "torch.compile each candidate op of the supernet with MODE (alone: default); the path "
                          "choice stays in Python; may change on --resume", nargs="?", const="default",
        choices=COMPILE_MODES, metavar="MODE")
    # simulates a kill in tests
    run.add_argument("--stop-after-epochs", type=number(int, min=0, max=limits.EPOCHS), help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    from facenar.search.engine import run_search

    options = {k: args.get(k) for k in RUN_OPTIONS}
    explicit = {k: v for k, v in args.items() if k not in RUN_OPTIONS}
    out = run_folder(options["out"], options["resume"])
    cfg = resolve_config(explicit, options["resume"])
    run_search(cfg, out, resume=bool(options["resume"]), force=bool(options["force"]),
               stop_after_epochs=options["stop_after_epochs"])
    return 0
