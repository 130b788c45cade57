"""benchmarks.networks runs end to end in quick mode and reports every row with its ratio."""
import pytest

from benchmarks import networks


@pytest.mark.slow
def test_quick_run_rows():
    rows = networks.run(quick=True, device="cpu")
    assert [r["network"] for r in rows] == ["plain iresnet50 (reference)", "facenar baseline child",
                                            "supernet, baseline path", "baseline iresnet50",
                                            "Ours-2 (paper, refined)"]
    assert all(r["per_s"] > 0 and r["ratio"] > 0 for r in rows)
    assert "width 0.25" in rows[0]["setting"]
    assert "quick mode" in networks.section(rows, quick=True).markdown()


def test_reference_network_is_iresnet50():
    model = networks.PlainIResNet50([64, 128, 256, 512], 112)
    assert sum(p.numel() for p in model.parameters()) == 43_590_848
