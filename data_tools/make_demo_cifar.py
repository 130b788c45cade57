"""Generate the synthetic CIFAR-10 stand-in (a `cifar-10-batches-py` folder of drawn shapes).

Usage: python -m data_tools.make_demo_cifar --out DIR [--train-per-class 500 --test-per-class 100
--seed 0 --force]. `--task cifar10` without --data uses data_tools.cifar_demo.ensure_demo_cifar(),
which runs this with the defaults into $FACENAR_HOME/demo_cifar10 on first use.
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from data_tools import limits
from data_tools.cifar_demo import DEFAULTS, make_demo_cifar
from data_tools.cli import number, run_cli


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_tools.make_demo_cifar",
                                     description="Generate synthetic (drawn shapes, not CIFAR) demo data "
                                                 "in the CIFAR-10 python format.")
    parser.add_argument("--out", required=True, help="output folder (appears atomically)")
    parser.add_argument("--train-per-class", type=number(int, min=1, max=limits.IMAGES), default=DEFAULTS["train_per_class"])
    parser.add_argument("--test-per-class", type=number(int, min=1, max=limits.IMAGES), default=DEFAULTS["test_per_class"])
    parser.add_argument("--seed", type=number(int, min=0, max=limits.SEED), default=DEFAULTS["seed"])
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = make_demo_cifar(args.out, args.train_per_class, args.test_per_class, args.seed, force=args.force)
    print(f"wrote synthetic CIFAR-10-format demo data to {out}: 10 classes x {args.train_per_class} training "
          f"+ {args.test_per_class} test images, in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)
