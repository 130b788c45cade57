"""The search record: CSV rows cut back for a resume, plots drawn from the CSVs, the final table."""
from __future__ import annotations

from facenar.space.arch import Arch
from facenar.space.cost import arch_stats, format_stats
from facenar.search.record import CURVES_PNG, HEATMAP_PNG, SearchRecord, format_final_table

OPS = ["conv3x3", "dwconv3x3", "max3x3", "avg3x3"]


def _row(epoch: int, phase: str) -> dict:
    return {"epoch": epoch, "phase": phase, "lr": 0.1 / epoch, "shared_loss": 5.0 - epoch, "train_acc": 0.1 * epoch,
            "reward_mean": 0.05 * epoch, "reward_max": 0.1 * epoch, "entropy": 33.0 - epoch,
            "baseline": None if phase == "pretrain" else 0.04 * epoch, "best_reward": 0.1 * epoch,
            "diversity": 4, "best_codes": "0-1-2"}


def test_rows_plots_and_truncate(tmp_path):
    record = SearchRecord(tmp_path, OPS)
    for epoch in (1, 2, 3):
        record.add_epoch(_row(epoch, "pretrain" if epoch == 1 else "search"),
                         [[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1], [0.0, 0.0, 1.0, 0.0]])
    record.plot()
    rows = record.metrics.read()
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[0]["baseline"] == "" and float(rows[2]["baseline"]) == 0.04 * 3
    ops = record.ops.read()
    assert len(ops) == 9 and float(ops[4]["conv3x3"]) == 0.7 and ops[4]["slot"] == "1"
    for name in (CURVES_PNG, HEATMAP_PNG):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record.truncate_after(1)  # a resume from the epoch-1 checkpoint drops what came after it
    assert [r["epoch"] for r in record.metrics.read()] == ["1"]
    assert {r["epoch"] for r in record.ops.read()} == {"1"}
    record.close()


def test_final_table_lists_ops_savings_and_rewards():
    arch = Arch("iresnet18", [0, 1, 2, 3, 0, 0, 0, 1], OPS, width=0.25, input_size=32)
    text = format_final_table(format_stats(arch_stats(arch)), {"reward": 0.5, "greedy_reward": 0.45, "random_mean_reward": 0.3,
                                                    "random_count": 20})
    rows = [line.split() for line in text.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert rows[0][5] == "dwconv3x3" and rows[1][5] == "max3x3"
    assert "vs baseline" in text and "%" in text
    assert "mean of 20 random" in text and "0.3000" in text and "0.4500" in text
