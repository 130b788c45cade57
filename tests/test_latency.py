"""Latency table: every slot x candidate timed, consistent cost prediction, CLI output file."""
import json

import pytest

from facenar_runtime.errors import UserError
from facenar import arch as arch_cli
from facenar.space.arch import Arch
from facenar.space.latency import latency_cost, load_latency_table, measure_latency

SMALL = dict(width=0.125, input_size=16, embedding_size=8, repeats=2, warmup=1)


def test_table_covers_every_slot_and_predicts_baseline():
    table = measure_latency("iresnet18", **SMALL)
    assert list(table["slots"]) == [str(i) for i in range(8)]
    assert all(set(row) == {"conv3x3", "dwconv3x3", "max3x3", "avg3x3"} for row in table["slots"].values())
    assert all(ms > 0 for row in table["slots"].values() for ms in row.values())
    predicted = latency_cost(table, [0] * 8)
    conv_ms = sum(row["conv3x3"] for row in table["slots"].values())
    assert predicted == pytest.approx(max(table["baseline_ms"], conv_ms))  # the measured network time
    swap = latency_cost(table, [2] + [0] * 7)
    assert swap - predicted == pytest.approx(table["slots"]["0"]["max3x3"] - table["slots"]["0"]["conv3x3"])
    with pytest.raises(ValueError):
        latency_cost(table, [0] * 7)


def test_conv_granularity_and_onnxruntime():
    table = measure_latency("iresnet18", candidates=["conv3x3", "max3x3"], granularity="conv",
                            backend="onnxruntime", **SMALL)
    assert len(table["slots"]) == 16 and table["backend"] == "onnxruntime"
    assert latency_cost(table, [1] * 16) > 0


def test_cli_writes_table_and_refuses_overwrite(tmp_path, capsys):
    out = tmp_path / "lat.json"
    argv = ["latency", "--backbone", "iresnet18", "--width", "0.125", "--input-size", "16",
            "--repeats", "1", "--out", str(out)]
    assert arch_cli.main(argv) == 0
    table = json.loads(out.read_text())
    assert load_latency_table(out) == table
    arch = Arch("iresnet18", [0] * 8, candidates=["max3x3", "conv3x3"], width=0.125, input_size=16)
    assert latency_cost(table, arch) == pytest.approx(latency_cost(table, [2] * 8))
    with pytest.raises(ValueError, match="measured for"):
        latency_cost(table, Arch.baseline("iresnet18"))
    assert table["repeats"] == 1 and len(table["slots"]) == 8
    assert "baseline network" in capsys.readouterr().out
    with pytest.raises(UserError, match="--force"):
        arch_cli.main(argv)


def test_load_rejects_foreign_files(tmp_path):
    (tmp_path / "x.json").write_text('{"slots": {}}')
    with pytest.raises(UserError, match="not a facenar latency table"):
        load_latency_table(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("[")
    with pytest.raises(UserError, match="not valid JSON"):
        load_latency_table(tmp_path / "y.json")
