"""Parameter / multiply-add counting reproduces the paper's Table 2 figures within 1.5%."""
import json
from pathlib import Path

import pytest

from facenar import arch as arch_cli
from facenar.space.arch import Arch
from facenar.space.cost import count_cost, op_cost
from facenar.space.resnet import resnet_cost

ARCHS = Path(__file__).resolve().parents[1] / "weights" / "archs"
PAPER = {  # Table 2: parameter number, FLOPS (= multiply-adds)
    "iresnet50_baseline.json": (4.35e7, 6.32e9),
    "iresnet50_nar_paper.json": (3.40e7, 5.31e9),
    "iresnet50_nar_pretrain_paper.json": (3.38e7, 4.69e9),
}


@pytest.mark.parametrize("name", sorted(PAPER))
def test_paper_figures(name, capsys):
    params, macs = PAPER[name]
    assert arch_cli.main(["stats", str(ARCHS / name), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert abs(stats["params"] / params - 1) < 0.015
    assert abs(stats["macs"] / macs - 1) < 0.015
    assert stats["baseline_params"] == 43_590_848 and stats["baseline_macs"] == 6_309_330_944
    assert len(stats["per_slot"]) == 24
    assert sum(r["macs"] for r in stats["per_slot"]) < stats["macs"]  # stem/shortcuts/fc on top


def test_exact_design_numbers():
    ours2 = count_cost(Arch.load(ARCHS / "iresnet50_nar_pretrain_paper.json"))
    assert (ours2.params, ours2.macs) == (33_851_328, 4_670_131_200)
    base = count_cost(Arch.baseline("iresnet50"))
    assert base.per_slot[0]["macs"] == 64 * 64 * 9 * (112 * 112 + 56 * 56)
    assert base.per_slot[0]["params"] == 2 * 64 * 64 * 9


def test_slot_costs_add_up():
    base = count_cost(Arch.baseline("iresnet50"))
    codes = [0] * 24
    codes[10] = 2
    changed = count_cost(Arch("iresnet50", codes))
    delta = base.per_slot[10]["macs"] - changed.per_slot[10]["macs"]
    assert base.macs - changed.macs == delta
    assert changed.per_slot[10]["macs"] == 2 * 256 * 256 * 14 * 14  # two 1x1 convs, pooling free


def test_op_costs():
    assert op_cost("dwconv3x3", 8, 16, 1, 4) == (8 * 9 + 8 * 16, (8 * 9 + 8 * 16) * 16)
    assert op_cost("max3x3", 8, 8, 2, 4) == (64, 64 * 4)


def test_stats_table_and_codes(capsys):
    codes = ",".join(["0"] * 15 + ["1"] + ["0"] * 8)
    assert arch_cli.main(["stats", "--backbone", "iresnet50", "--codes", codes]) == 0
    out = capsys.readouterr().out
    assert "dwconv3x3" in out and "vs baseline" in out and "%" in out
    assert out.count("\n") > 24


def test_stats_conv_granularity_small(capsys):
    codes = ",".join(["1"] * 16)
    arch_cli.main(["stats", "--backbone", "iresnet18", "--granularity", "conv", "--width", "0.25",
                   "--input-size", "64", "--codes", codes, "--json"])
    stats = json.loads(capsys.readouterr().out)
    assert len(stats["per_slot"]) == 16 and stats["macs"] < stats["baseline_macs"]


@pytest.mark.parametrize("name", ["resnet18_baseline.json", "resnet18_8_paper.json", "resnet18_16_paper.json"])
def test_resnet_count_cost_matches_resnet_cost(name):
    arch = Arch.load(ARCHS / name)
    cost = count_cost(arch, num_classes=1000)
    reference = resnet_cost(arch.codes, arch.granularity)
    assert (cost.params, cost.macs) == (reference.params, reference.macs)
    assert (cost.params, cost.macs) == (arch.provenance["params"], arch.provenance["macs"])
    bare = count_cost(arch)
    assert (cost.params - bare.params, cost.macs - bare.macs) == (513_000, 512_000)  # the Linear(512->1000)
    assert len(cost.per_slot) == arch.num_slots == sum(bool(row["macs"]) for row in cost.per_slot)


def test_stats_cli_on_resnet_json(capsys):
    assert arch_cli.main(["stats", str(ARCHS / "resnet18_8_paper.json"), "--num-classes", "1000", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["baseline_params"], stats["baseline_macs"]) == (11_689_512, 1_814_073_344)  # torchvision
    assert len(stats["per_slot"]) == 8 and stats["per_slot"][0]["op"] == "dwconv3x3"
    assert stats["per_slot"][0]["shape"] == "64x56x56 -> 64x56x56"
    assert round(100 * (1 - stats["macs_ratio"]), 1) == 11.1  # Table 4: 1 - 1.57/1.76 = 10.8%
    assert arch_cli.main(["stats", str(ARCHS / "resnet18_16_paper.json")]) == 0
    out = capsys.readouterr().out
    assert "resnet18 width 1.0 input 224 (conv granularity, 4 of 16 slots replaced)" in out
    assert out.count("max3x3") == 2 and "vs baseline" in out
