"""python -m facenar.search.fig1 RUN_DIR... --out fig1.png: the paper's Fig. 1 from ENAS-space searches.

The NAR paper motivates fixed skips with ENAS: searched freely, the controller's skip
probabilities drift away from 0.5 and the sampled networks become dense. Each run directory of
`python -m facenar.search --space enas` records per epoch the mean skip probability and
KL(p_skip || 0.5) of the sampled architectures (search.csv); this draws both, one line per run,
labelled by the run's skip penalty weight (0 = off), and writes the plotted numbers as CSV.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Sequence

from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json, read_csv
from facenar.search.spaces import SKIP_COLUMNS

CSV_COLUMNS = ["run", "skip_weight", "epoch", *SKIP_COLUMNS]
RUN_FILES = ("config.json", "search.csv")  # what is read of each run (inputs for the output guard)
PANELS = (("skip_kl_half", "KL(p_skip || 0.5) of sampled architectures"), ("skip_prob", "mean skip probability"))


def read_run(run_dir: str | Path) -> list[dict]:
    """One Fig. 1 row per epoch of an ENAS-space search run."""
    run = Path(run_dir)
    if not all((run / name).is_file() for name in RUN_FILES):
        raise UserError(f"{run}: not a search run directory (needs config.json and search.csv)")
    config = read_json(run / "config.json", "run configuration")
    if not isinstance(config, dict) or config.get("space") != "enas":
        raise UserError(f"{run}: not a --space enas search; Fig. 1 needs the skip statistics of ENAS's space")
    rows = read_csv(run / "search.csv", "search record")
    try:
        return [{"run": run.name, "skip_weight": float(config["skip_weight"]), "epoch": int(row["epoch"]),
                 **{key: float(row[key]) for key in SKIP_COLUMNS}} for row in rows]
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{run / 'search.csv'}: missing or non-numeric epoch/skip columns") from None


def label(rows: list[dict]) -> str:
    weight = rows[0]["skip_weight"]
    return f"{rows[0]['run']}: skip penalty {'off' if weight == 0 else f'on (weight {weight:g})'}"


def plot_fig1(run_dirs: Sequence[str | Path], out: str | Path, out_csv: str | Path) -> list[dict]:
    """Draw KL(p_skip || 0.5) and the mean skip probability per epoch; return (and write) the numbers."""
    from facenar_runtime.atomic import atomic_open, atomic_path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [read_run(path) for path in run_dirs]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, (key, title) in zip(axes, PANELS):
        for rows in runs:
            ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker=".", label=label(rows))
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[1].axhline(0.5, color="0.6", linestyle=":")
    # one legend under both panels: the run labels are long and would cover the curves
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=1, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.05 * len(runs), 1, 1))
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    table = [row for rows in runs for row in rows]
    with atomic_open(out_csv, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    from facenar_runtime.outputs import check_outputs

    p = argparse.ArgumentParser(prog="python -m facenar.search.fig1", description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="search run directories (--space enas)")
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument("--csv", help="the plotted numbers (default: --out with .csv)")
    p.add_argument("--force", action="store_true", help="replace existing outputs")
    args = p.parse_args(argv)
    out_csv = args.csv or str(Path(args.out).with_suffix(".csv"))
    read = [Path(run) / name for run in args.runs for name in RUN_FILES]
    check_outputs(args.force, files={"--out": args.out, "--csv": out_csv}, inputs={"RUN_DIR": read})
    table = plot_fig1(args.runs, args.out, out_csv)
    print(f"wrote {args.out} and {out_csv} ({len(args.runs)} runs, {len(table)} epochs)")
    return 0


if __name__ == "__main__":
    run_cli(main)
