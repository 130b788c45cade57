"""Parameter / multiply-add counting reproduces the paper's Table 2 figures within 1.5%."""
import json
from pathlib import Path

import pytest

from facenar import arch as arch_cli
from facenar.space.arch import Arch
from facenar.space.cost import count_cost, op_cost

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
