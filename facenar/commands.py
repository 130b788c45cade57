"""The `facenar` console script: one command registry, one subcommand per `python -m` command.

Each entry is the `module:function` of a command's `main(argv)`, imported only when that command
runs, so `facenar --help` lists everything in a fraction of a second without importing torch. The
`python -m` forms stay; both run the same `main` behind the same error boundary.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from facenar.registry import Registry
from facenar_runtime.cli import run_cli

COMMANDS: Registry[str] = Registry("command")
_COMMANDS = [
    # (name, module:function, summary); the order is the order of --help
    ("prepare-proxy", "facenar.prepare_proxy:main", "build the NAR proxy split (train/val) from an emore dataset"),
    ("search", "facenar.search.cli:main", "NAR search on a proxy split; writes arch.json and the search record"),
    ("search-fig1", "facenar.search.fig1:main", "the paper's Fig. 1 from ENAS-space search runs"),
    ("train", "facenar.train.cli:main", "train a fixed architecture (baseline or refined)"),
    ("verify", "facenar.verify.cli:main", "10-fold verification accuracy on insightface .bin files"),
    ("evaluate", "facenar.evaluate:main", "top-1 / top-5 of a classification checkpoint on its test split"),
    ("export", "facenar.export:main", "ONNX export of a trained model (insightface model-zoo form)"),
    ("arch", "facenar.arch:main", "inspect architectures of the search space (cost, per-slot table)"),
    ("modules", "facenar.modules:main", "the module map: every module with the first sentence of its docstring"),
    ("make-demo", "data_tools.make_demo:main", "generate the synthetic face demo dataset (emore layout + .bin)"),
    ("make-demo-cifar", "data_tools.make_demo_cifar:main", "generate the synthetic CIFAR demo folders"),
    ("img2rec", "data_tools.img2rec:main", "a folder per identity of aligned images -> emore layout"),
    ("rec2img", "data_tools.rec2img:main", "an emore dataset -> a folder per identity"),
    ("align", "data_tools.align:main", "5-point alignment to the ArcFace 112x112 template"),
    ("make-bin", "data_tools.make_bin:main", "an insightface verification .bin from images and pairs.txt"),
    ("inspect", "data_tools.inspect:main", "what an emore dataset holds, optionally checking every record"),
    ("benchmark", "benchmarks.run:main", "run every benchmark and write one markdown report"),
    ("bench-cost-table", "benchmarks.cost_table:main", "benchmark: parameters and MACs against the paper's tables"),
    ("bench-networks", "benchmarks.networks:main", "benchmark: network speed against a plain iresnet50"),
    ("bench-verification", "benchmarks.verification:main", "benchmark: verification protocol and embedding speed"),
    ("bench-data-pipeline", "benchmarks.data_pipeline:main", "benchmark: .rec read + decode and loader throughput"),
    ("bench-proxy-split", "benchmarks.proxy_split:main", "benchmark: proxy split cost at MS1M's identity count"),
    ("bench-search-cost", "benchmarks.search_cost:main", "benchmark: seconds per search epoch by phase"),
    ("bench-search-evidence", "benchmarks.search_evidence:main", "benchmark: ranking fidelity and NAR vs baselines"),
    ("bench-search-strategies", "benchmarks.search_strategies:main",
     "benchmark: enas vs random vs evolution epochs and derivation, derive again vs search"),
    ("bench-derive-scaling", "benchmarks.derive_scaling:main", "benchmark: derivation on 1 vs 2 processes"),
    ("bench-ijb", "benchmarks.ijb_eval:main", "benchmark: IJB-C scoring at full scale vs insightface's loops"),
    ("gpu-check", "benchmarks.gpu_check:main", "one-command GPU check: bf16 training, search, embedding, NCCL"),
]
for _name, _target, _summary in _COMMANDS:
    COMMANDS.register(_name, summary=_summary)(_target)


def python_module(name: str) -> str:
    """The `python -m` module of a command (facenar.search.cli -> facenar.search: its package runs it)."""
    module = COMMANDS.get(name).split(":")[0]
    return module.rsplit(".", 1)[0] if module.endswith(".cli") else module


def load(name: str):
    module, function = COMMANDS.get(name).split(":")
    return getattr(importlib.import_module(module), function)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="facenar", description="Neural Architecture Refinement for face recognition. "
                                "`facenar COMMAND --help` shows a command's options; every command also runs as "
                                "`python -m MODULE`.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.summaries().items():
        # options belong to the command itself: everything after its name is handed over untouched
        sub.add_parser(name, help=f"{summary} (python -m {python_module(name)})", add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry: `facenar COMMAND [options]` runs that command's main(options)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0].startswith("-") or args[0] not in COMMANDS:
        parser().parse_args(args)  # prints help / the usage error and exits
    run_cli(load(args[0]), args[1:])
