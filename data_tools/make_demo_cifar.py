"""Generate the synthetic CIFAR-10 stand-in (a `cifar-10-batches-py` folder of drawn shapes), or with
--cifar100 the CIFAR-100 one (`cifar-100-python`).

Usage: python -m data_tools.make_demo_cifar --out DIR [--cifar100 --train-per-class 500 --test-per-class 100
--seed 0 --force]. `--task cifar10` / `cifar100` without --data uses data_tools.cifar_demo.ensure_demo_cifar(),
which runs this with the defaults into $FACENAR_HOME/demo_cifar10 (demo_cifar100) on first use.
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from data_tools.cifar import CIFAR10, CIFAR100
from data_tools.cifar_demo import DEFAULTS, DEFAULTS_100, make_demo_cifar
from facenar_runtime.cli import number, run_cli
from facenar_runtime import limits


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_tools.make_demo_cifar",
                                     description="Generate synthetic (drawn shapes, not CIFAR) demo data "
                                                 "in the CIFAR-10 python format.")
    parser.add_argument("--out", required=True, help="output folder (appears atomically)")
    parser.add_argument("--cifar100", action="store_true", help="the CIFAR-100 format (100 fine classes)")
    parser.add_argument("--train-per-class", type=number(int, min=1, max=limits.IMAGES),
                        help=f"default {DEFAULTS['train_per_class']} ({DEFAULTS_100['train_per_class']} with --cifar100)")
    parser.add_argument("--test-per-class", type=number(int, min=1, max=limits.IMAGES),
                        help=f"default {DEFAULTS['test_per_class']} ({DEFAULTS_100['test_per_class']} with --cifar100)")
    parser.add_argument("--seed", type=number(int, min=0, max=limits.SEED), default=DEFAULTS["seed"])
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    layout, defaults = (CIFAR100, DEFAULTS_100) if args.cifar100 else (CIFAR10, DEFAULTS)
    train = args.train_per_class or defaults["train_per_class"]
    test = args.test_per_class or defaults["test_per_class"]
    start = time.perf_counter()
    out = make_demo_cifar(args.out, train, test, args.seed, force=args.force, layout=layout)
    print(f"wrote synthetic {layout.name}-format demo data to {out}: {layout.num_classes} classes x {train} training "
          f"+ {test} test images, in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)
