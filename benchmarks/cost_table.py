"""Cost table: parameters and multiply-adds of the baselines and the paper's refined networks vs Tables 2 and 4.

facenar.space.cost.count_cost counts the architectures shipped in weights/archs: the face networks
(LResNet50E-IR, Ours-1 = LResNet50E-IR-Based, Ours-2 = LResNet50E-IR-Based-PreTrain) at 112x112
against Table 2, and ResNet-18, ResNet-18-8 and ResNet-18-16 at 224x224 with an ImageNet classifier
against Table 4. Each count is set beside the paper's figure with the relative difference, and the
MAC saving against its baseline beside the paper's. Counting runs on the meta device (seconds).

    python -m benchmarks.cost_table
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from benchmarks.common import Section, print_section
from facenar_runtime.cli import run_cli

ARCHS = Path(__file__).resolve().parents[1] / "weights" / "archs"
# (label, arch file, paper params (None: not printed), paper "FLOPS" = multiply-adds);
# a table's first row is its baseline
PAPER_TABLE2 = (
    ("LResNet50E-IR (baseline)", "iresnet50_baseline.json", 4.35e7, 6.32e9),
    ("Ours-1 (LResNet50E-IR-Based)", "iresnet50_nar_paper.json", 3.40e7, 5.31e9),
    ("Ours-2 (LResNet50E-IR-Based-PreTrain)", "iresnet50_nar_pretrain_paper.json", 3.38e7, 4.69e9),
)
PAPER_TABLE4 = (
    ("ResNet-18 (baseline)", "resnet18_baseline.json", 1.17e7, 1.76e9),
    ("ResNet-18-8", "resnet18_8_paper.json", None, 1.57e9),
    ("ResNet-18-16", "resnet18_16_paper.json", 0.92e7, 1.41e9),
)
IMAGENET_CLASSES = 1000  # Table 4 counts ResNet-18 with its ImageNet classifier, as torchvision's figures do
TOLERANCE = 0.015  # the paper prints three significant digits, so rounding alone moves figures by up to ~0.15%
SAVING_TOLERANCE, RESNET_PARAMS_TOLERANCE = 0.005, 0.01
COLUMNS = ["network", "replaced", "params", "paper_params", "params_diff", "macs", "paper_macs", "macs_diff",
           "mac_saving", "paper_mac_saving", "counted"]
COUNTED = {"Table 2": "112x112, embedding FC included",
           "Table 4": f"224x224, + Linear(512->{IMAGENET_CLASSES})"}


def _diff(ours: float, paper: float) -> float:
    return ours / paper - 1


def _rows(table: str, entries, num_classes: int) -> list[dict]:
    """One row per network of a paper table; savings are against the table's first row (its baseline)."""
    from facenar.space.arch import Arch
    from facenar.space.cost import count_cost

    counted = []
    for label, file, paper_params, paper_macs in entries:
        arch = Arch.load(ARCHS / file)
        counted.append((label, arch, count_cost(arch, num_classes), paper_params, paper_macs))
    base_macs, paper_base_macs = counted[0][2].macs, counted[0][4]
    rows = []
    for label, arch, cost, paper_params, paper_macs in counted:
        params_diff = None if paper_params is None else _diff(cost.params, paper_params)
        saving, paper_saving = 1 - cost.macs / base_macs, 1 - paper_macs / paper_base_macs
        rows.append({"network": label, "replaced": f"{sum(op != 'conv3x3' for op in arch.ops)}/{arch.num_slots}",
                     "params": f"{cost.params / 1e7:.4f}e7",
                     "paper_params": "—" if paper_params is None else f"{paper_params / 1e7:.2f}e7",
                     "params_diff": "—" if params_diff is None else f"{100 * params_diff:+.2f}%",
                     "macs": f"{cost.macs / 1e9:.4f}e9", "paper_macs": f"{paper_macs / 1e9:.2f}e9",
                     "macs_diff": f"{100 * _diff(cost.macs, paper_macs):+.2f}%",
                     "mac_saving": f"{100 * saving:.1f}%", "paper_mac_saving": f"{100 * paper_saving:.1f}%",
                     "counted": COUNTED[table],
                     "_params_diff": abs(params_diff or 0.0), "_macs_diff": abs(_diff(cost.macs, paper_macs)),
                     "_saving_gap": abs(saving - paper_saving)})
    return rows


def run(quick: bool = False) -> Section:
    """quick changes nothing (counting is instant); the argument keeps the common benchmark signature."""
    faces = _rows("Table 2", PAPER_TABLE2, 0)
    resnets = _rows("Table 4", PAPER_TABLE4, IMAGENET_CLASSES)
    section = Section("Cost table: params and multiply-adds vs the paper's Tables 2 and 4", COLUMNS, faces + resnets)
    worst = max(faces, key=lambda row: max(row["_params_diff"], row["_macs_diff"]))
    worst_value = max(worst["_params_diff"], worst["_macs_diff"])
    section.target(f"every Table 2 count within {100 * TOLERANCE:.1f}%", worst_value <= TOLERANCE,
                   f"largest difference {100 * worst_value:.2f}% ({worst['network']})")
    gap = max(resnets, key=lambda row: row["_saving_gap"])
    params_gap = max(row["_params_diff"] for row in resnets)
    section.target(f"ResNet-18 MAC savings within {100 * SAVING_TOLERANCE:.1f} points of Table 4 and params within "
                   f"{100 * RESNET_PARAMS_TOLERANCE:.0f}%",
                   gap["_saving_gap"] <= SAVING_TOLERANCE and params_gap <= RESNET_PARAMS_TOLERANCE,
                   f"largest saving gap {100 * gap['_saving_gap']:.2f} points ({gap['network']}), "
                   f"largest params difference {100 * params_gap:.2f}%")
    macs_gaps = [100 * row["_macs_diff"] for row in resnets]
    for row in section.rows:
        for key in ("_params_diff", "_macs_diff", "_saving_gap"):
            del row[key]
    section.notes.append("counted by facenar.space.cost.count_cost: multiply-adds of convolutions and fully connected "
                         "layers (BN, activations, pooling and additions count zero), parameters including BN and "
                         "PReLU; archs from weights/archs (Ours-1's and ResNet-18-16's vectors are truncated in the "
                         "paper text and reconstructed, see their provenance)")
    section.notes.append(f"Table 4 rows: torchvision's ResNet-18 layout at 224x224 plus the Linear(512->"
                         f"{IMAGENET_CLASSES}) classifier (count_cost(arch, num_classes={IMAGENET_CLASSES})); the "
                         f"absolute MACs are {min(macs_gaps):+.1f}..{max(macs_gaps):+.1f}% above Table 4 because no "
                         "counting convention reproduces 1.76e9 and 1.57e9 together (ours is torchvision's "
                         "1.81e9, He et al.'s '1.8e9 FLOPs'; dropping the fc, stem or shortcuts moves every row by the same "
                         "amount and still misses one of them, see facenar.space.resnet.CONVENTIONS), while the "
                         "savings, which the paper's claims rest on, agree")
    return section


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cost_table", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry; the table is always exact")
    args = parser.parse_args(argv)
    print_section(run(args.quick))
    return 0


if __name__ == "__main__":
    run_cli(main)
