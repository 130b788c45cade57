"""Cost table: parameters and multiply-adds of the baseline and the paper's refined networks vs Table 2.

facenar.cost.count_cost counts the architectures shipped in weights/archs (LResNet50E-IR, Ours-1 =
LResNet50E-IR-Based, Ours-2 = LResNet50E-IR-Based-PreTrain) at 112x112; each count is set beside
the paper's Table 2 figure with the relative difference, and the MAC saving against the baseline
beside the paper's. Counting runs on the meta device, so this takes seconds.

    python -m benchmarks.cost_table
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from benchmarks.common import Section, print_section
from data_tools.cli import run_cli

ARCHS = Path(__file__).resolve().parents[1] / "weights" / "archs"
# (label, arch file, Table 2 params, Table 2 "FLOPS" = multiply-adds)
PAPER_TABLE2 = (
    ("LResNet50E-IR (baseline)", "iresnet50_baseline.json", 4.35e7, 6.32e9),
    ("Ours-1 (LResNet50E-IR-Based)", "iresnet50_nar_paper.json", 3.40e7, 5.31e9),
    ("Ours-2 (LResNet50E-IR-Based-PreTrain)", "iresnet50_nar_pretrain_paper.json", 3.38e7, 4.69e9),
)
TOLERANCE = 0.015  # the paper prints three significant digits, so rounding alone moves figures by up to ~0.15%
COLUMNS = ["network", "replaced", "params", "paper_params", "params_diff", "macs", "paper_macs", "macs_diff",
           "mac_saving", "paper_mac_saving"]


def _diff(ours: float, paper: float) -> float:
    return ours / paper - 1


def run(quick: bool = False) -> Section:
    """quick changes nothing (counting is instant); the argument keeps the common benchmark signature."""
    from facenar.space.arch import Arch
    from facenar.space.cost import count_cost

    reports = []
    for label, file, paper_params, paper_macs in PAPER_TABLE2:
        arch = Arch.load(ARCHS / file)
        reports.append((label, file, arch, count_cost(arch), paper_params, paper_macs))
    base_macs, paper_base_macs = reports[0][3].macs, reports[0][5]
    rows = []
    for label, file, arch, cost, paper_params, paper_macs in reports:
        rows.append({"network": label, "replaced": f"{sum(op != 'conv3x3' for op in arch.ops)}/{arch.num_slots}",
                     "params": f"{cost.params / 1e7:.4f}e7", "paper_params": f"{paper_params / 1e7:.2f}e7",
                     "params_diff": f"{100 * _diff(cost.params, paper_params):+.2f}%",
                     "macs": f"{cost.macs / 1e9:.4f}e9", "paper_macs": f"{paper_macs / 1e9:.2f}e9",
                     "macs_diff": f"{100 * _diff(cost.macs, paper_macs):+.2f}%",
                     "mac_saving": f"{100 * (1 - cost.macs / base_macs):.1f}%",
                     "paper_mac_saving": f"{100 * (1 - paper_macs / paper_base_macs):.1f}%",
                     "_worst": max(abs(_diff(cost.params, paper_params)), abs(_diff(cost.macs, paper_macs)))})
    section = Section("Cost table: params and multiply-adds vs the paper's Table 2", COLUMNS, rows)
    worst = max(rows, key=lambda row: row["_worst"])
    section.target(f"every count within {100 * TOLERANCE:.1f}% of Table 2", worst["_worst"] <= TOLERANCE,
                   f"largest difference {100 * worst['_worst']:.2f}% ({worst['network']})")
    for row in rows:
        del row["_worst"]
    section.notes.append("counted by facenar.cost.count_cost at 112x112: multiply-adds of convolutions and the "
                         "embedding FC (the paper's 'FLOPS'), parameters including BN and PReLU; archs from "
                         "weights/archs (Ours-1's vector is truncated in the paper text and reconstructed, see its "
                         "provenance)")
    return section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost_table", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry; the table is always exact")
    args = parser.parse_args(argv)
    print_section(run(args.quick))
    return 0


if __name__ == "__main__":
    run_cli(main)
