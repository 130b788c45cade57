"""python -m facenar.prepare_proxy: build the NAR proxy split (train/val) from an emore dataset.

Without --data it splits the built-in demo dataset with demo-sized defaults into the demo proxy
folder (what `python -m facenar.search` uses by default).
"""
from __future__ import annotations

import argparse
from typing import Sequence

from facenar_runtime.cli import number, run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.paths import demo_proxy_dir
from facenar_runtime import limits
from data_tools.proxy import DEMO_DEFAULTS, FULL_DEFAULTS, build_proxy, format_summary


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facenar.prepare_proxy",
        description="Sample identities and images of an emore dataset (train.rec/idx + property) "
                    "into a proxy split: OUT/train.rec|idx, OUT/val.rec|idx, property, manifest.csv.")
    parser.add_argument("--data", metavar="DIR", help="emore dataset folder (default: the built-in demo data)")
    parser.add_argument("--out", metavar="DIR", help="output folder (default with no --data: the demo proxy folder)")
    parser.add_argument("--num-ids", type=number(int, min=1, max=limits.IDENTITIES), help=f"identities to sample (default {FULL_DEFAULTS['num_ids']}, "
                                                    f"demo {DEMO_DEFAULTS['num_ids']})")
    parser.add_argument("--per-id", type=number(int, min=2, max=limits.IMAGES), help=f"images per identity; identities with fewer are skipped "
                                                   f"(default {FULL_DEFAULTS['per_id']})")
    parser.add_argument("--val-per-id", type=number(int, min=1, max=limits.IMAGES), help=f"of those, images held out for val "
                                                       f"(default {FULL_DEFAULTS['val_per_id']})")
    parser.add_argument("--seed", type=number(int, min=0, max=limits.SEED), help="sampling seed (default 0); same seed, same bytes")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.data is None:
        from data_tools.demo import ensure_demo

        defaults, data, out = DEMO_DEFAULTS, ensure_demo(), args.out or demo_proxy_dir()
    elif args.out is None:
        raise UserError("--out is required with --data (the folder to write the proxy split to)")
    else:
        defaults, data, out = FULL_DEFAULTS, args.data, args.out
    options = {name: defaults[name] if getattr(args, name) is None else getattr(args, name)
               for name in ("num_ids", "per_id", "val_per_id", "seed")}
    print(format_summary(build_proxy(data, out, **options, force=args.force)))


if __name__ == "__main__":
    run_cli(main)
