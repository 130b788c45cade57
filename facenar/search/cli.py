"""python -m facenar.search: NAR search on a proxy split; writes arch.json, the Pareto front and the record.

With no arguments it searches the built-in demo proxy with the `demo` preset (minutes on a CPU).
Under torchrun the shared-weight training is data-parallel (gloo on CPU, NCCL on GPUs).
`python -m facenar.search derive RUN_DIR --max-macs 3G --out arch_3g.json` derives again from a
finished or stopped search's shared weights for a new budget (no training).
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
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
from facenar.search.strategies import STRATEGIES

# where a run goes, not what it computes (never stored in config.json)
RUN_OPTIONS = ("out", "resume", "force", "stop_after_epochs")


def count(flag: str):
    """Parser of '4.7G', '800M', '1.2e9' (multiply-adds or parameters) for `flag`."""

    def parse(text: str) -> float:
        scale = {"K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}.get(text.strip()[-1:].upper(), 1.0)
        digits = text.strip()[:-1] if scale != 1.0 else text.strip()
        try:
            value = float(digits) * scale
        except ValueError:
            raise UserError(f"{flag} must be a number such as 4.7G or 800M, got {text!r}") from None
        if not value > 0 or value == float("inf"):
            raise UserError(f"{flag} must be positive and finite, got {text!r}")
        return value

    return parse


def add_budget_options(parser, add) -> None:
    """The hard budgets, shared by the search and `derive`."""
    budget = parser.add_argument_group("budget (hard limits: arch.json is the best candidate within all of them)")
    add(budget, "--max-macs", "multiply-adds, e.g. 3G", type=count("--max-macs"))
    add(budget, "--max-params", "parameters, e.g. 20M", type=count("--max-params"))
    add(budget, "--max-latency-ms", "predicted milliseconds, with --latency-table")


def strategy_help() -> str:
    return "; ".join(f"{name}: {text}" for name, text in STRATEGIES.summaries().items())


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS: only options actually given reach the config, so presets and resumed runs keep theirs
    p = argparse.ArgumentParser(prog="python -m facenar.search", argument_default=argparse.SUPPRESS,
                                description="Neural Architecture Refinement: search one operator per block of an "
                                            "iresnet on a proxy split (defaults: the paper's settings; "
                                            "without --data: the demo proxy and the demo preset).",
                                epilog=HELP_EPILOG + " Subcommand: derive RUN_DIR (derive again for a new budget; "
                                                     "derive --help).")

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
    strategy = p.add_argument_group("search strategy")
    add(strategy, "--strategy", strategy_help(), choices=STRATEGIES.names())
    evolution = p.add_argument_group("evolution (--strategy evolution)")
    add(evolution, "--population", "population size P")
    add(evolution, "--tournament", "tournament sample size S")
    add(evolution, "--evolution-cycles", "cycles (one mutated child scored each) per epoch after PreTrain")
    ctrl = p.add_argument_group("controller (--strategy enas; --controller-samples: every strategy's record)")
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
    add(cost, "--target-macs", "e.g. 4.7G", type=count("--target-macs"))
    add(cost, "--target-latency", "milliseconds, with --cost latency")
    add(cost, "--latency-table", "JSON from python -m facenar.arch latency --out")
    add(cost, "--cost-weight", "w < 0")
    add_budget_options(p, add)
    add(p, "--seed", "")
    run = p.add_argument_group("run")
    run.add_argument("--out", help="run directory (default runs/search-<timestamp>)")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a killed run from its last checkpoint")
    run.add_argument("--force", action="store_true", help="replace a finished run in --out (only a folder facenar wrote)")
    add(run, "--device", "auto, cpu, cuda or cuda:N", type=device_option)
    add(run, "--workers", "DataLoader workers per process (default 0 on CPU; on CUDA the cores per GPU process "
                          "less one, at most 8)")
    add(run, "--compile", "torch.compile the supernet's blocks, once per choice, with MODE (alone: default); the "
                          "path choice stays in Python; may change on --resume", nargs="?", const="default",
        choices=COMPILE_MODES, metavar="MODE")
    # simulates a kill in tests
    run.add_argument("--stop-after-epochs", type=number(int, min=0, max=limits.EPOCHS), help=argparse.SUPPRESS)
    return p


def build_derive_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m facenar.search derive", argument_default=argparse.SUPPRESS,
                                description="Derive again from a finished or stopped search's shared weights "
                                            "(minutes, no training): score candidates within a new budget on the "
                                            "whole val split; writes the arch and its Pareto front "
                                            "(OUT.pareto.json/.png beside it).")
    add = functools.partial(add_option, config=SearchConfig)
    p.add_argument("run_dir", metavar="RUN_DIR", help="a search run folder (python -m facenar.search --out)")
    add(p, "--strategy", "who proposes the candidates (default: the run's own); " + strategy_help(),
        choices=STRATEGIES.names())
    add_budget_options(p, add)
    add(p, "--latency-table", "JSON from python -m facenar.arch latency --out (for --max-latency-ms)")
    add(p, "--derive-samples", "candidates scored")
    add(p, "--evolution-cycles", "cycles of evolution within the new budget (--strategy evolution)")
    add(p, "--population", "population size P (--strategy evolution)")
    add(p, "--tournament", "tournament sample size S (--strategy evolution)")
    p.add_argument("--out", required=True, help="the derived architecture (JSON)")
    p.add_argument("--force", action="store_true", help="replace an existing --out")
    p.add_argument("--rescore", action="store_true",
                   help="score every candidate again; by default an architecture the search's own derivation "
                        "scored (RUN_DIR/pareto.json) keeps that accuracy when the weights, data, device type and "
                        "precision are the same, since scoring it again gives the same number")
    add(p, "--device", "auto, cpu, cuda or cuda:N", type=device_option)
    return p


SUBCOMMANDS = ("derive",)  # main(["derive", ...]) parses with build_derive_parser (the docs' reference reads this)


def derive_main(argv: Sequence[str]) -> int:
    args = vars(build_derive_parser().parse_args(argv))
    from facenar.search.rederive import derive_again

    derive_again(args.pop("run_dir"), Path(args.pop("out")), force=args.pop("force", False),
                 rescore=args.pop("rescore", False), overrides=args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["derive"]:
        return derive_main(argv[1:])
    args = vars(build_parser().parse_args(argv))
    from facenar.search.engine import run_search

    options = {k: args.get(k) for k in RUN_OPTIONS}
    explicit = {k: v for k, v in args.items() if k not in RUN_OPTIONS}
    out = run_folder(options["out"], options["resume"])
    cfg = resolve_config(explicit, options["resume"])
    run_search(cfg, out, resume=bool(options["resume"]), force=bool(options["force"]),
               stop_after_epochs=options["stop_after_epochs"])
    return 0
