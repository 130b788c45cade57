"""Generate the synthetic demo dataset (emore layout + lfw/cfp_fp/agedb_30 .bin) into a folder.

Usage: python -m data_tools.make_demo --out DIR [--num-ids 600 --images-per-id 50 --pairs 300
--seed 0 --workers N --force]. Commands that get no --data use data_tools.demo.ensure_demo(),
which runs this with the defaults into $FACENAR_HOME/demo on first use.
"""
from __future__ import annotations

import argparse
import time
from typing import Sequence

from facenar_runtime.cli import number, run_cli
from facenar_runtime import limits
from data_tools.demo import DEFAULTS, FOLDS, make_demo


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_tools.make_demo",
                                     description="Generate the synthetic (drawn, not real) demo face dataset.")
    parser.add_argument("--out", required=True, help="output folder (appears atomically)")
    parser.add_argument("--num-ids", type=number(int, min=2, max=limits.IDENTITIES), default=DEFAULTS["num_ids"], help="training identities")
    parser.add_argument("--images-per-id", type=number(int, min=2, max=limits.IMAGES), default=DEFAULTS["images_per_id"])
    parser.add_argument("--pairs", type=number(int, min=FOLDS, max=limits.PAIRS), default=DEFAULTS["pairs_per_bench"],
                        help="positive pairs per bench (as many negative pairs are added)")
    parser.add_argument("--seed", type=number(int, min=0, max=limits.SEED), default=DEFAULTS["seed"])
    parser.add_argument("--workers", type=number(int, min=1, max=limits.WORKERS), default=None,
                        help="processes (default: all cores for large sets); the output does not depend on it")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = make_demo(args.out, num_ids=args.num_ids, images_per_id=args.images_per_id,
                    pairs_per_bench=args.pairs, seed=args.seed, force=args.force, workers=args.workers)
    print(f"wrote synthetic demo data to {out}: {args.num_ids} identities x {args.images_per_id} images, "
          f"{args.pairs}+{args.pairs} pairs per bench, in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    run_cli(main)
