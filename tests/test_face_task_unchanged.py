"""The face task behaves exactly as recorded: a tiny fixed-seed search and a tiny training run
(tests/face_task_run.py) reproduce the recorded arch.json, search.csv, search_ops.csv and train.csv;
both runs' TensorBoard events carry the same scalars as their CSVs.

The runs execute in a subprocess on pinned kernels (tests/pinned_kernels.py), so the recording holds on
every x86-64 machine, AVX2 or AVX-512, whatever kernels this process uses; elsewhere (arm64) the lock
skips with the reason. Regenerate the expectation only for an intended behaviour change:
    FACENAR_RECORD_EXPECTED=1 python -m pytest tests/test_face_task_unchanged.py
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pinned_kernels import pinned_env, unavailable_reason

pytestmark = pytest.mark.recorded
HERE = Path(__file__).parent
EXPECTED = HERE / "data" / "face_task_expected.json"


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """The two recorded runs, in a subprocess on pinned kernels."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("face_task")
    done = subprocess.run([sys.executable, str(HERE / "face_task_run.py"), str(tmp)], env=pinned_env(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return tmp


def _observe(tmp: Path) -> dict:
    arch = json.loads((tmp / "search" / "arch.json").read_text())
    prov = arch["provenance"]
    return {"codes": arch["codes"],
            "provenance": {k: prov[k] for k in ("reward", "greedy_reward", "greedy_codes", "random_mean_reward",
                                                 "params", "macs")},
            "search_csv": _rows(tmp / "search" / "search.csv"),
            "search_ops_csv": _rows(tmp / "search" / "search_ops.csv"),
            "train_csv": [{k: v for k, v in row.items() if k != "images_per_s"}  # wall-clock speed
                          for row in _rows(tmp / "train" / "train.csv")]}


def _same(got, want, where="") -> None:
    """Equal structure; numbers (also numeric CSV text) equal to 1e-6 relative (CSV text is rounded)."""
    if isinstance(want, dict):
        assert sorted(got) == sorted(want), where
        for key in want:
            _same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    else:
        try:
            assert float(got) == pytest.approx(float(want), rel=1e-6, abs=1e-9), where
        except (TypeError, ValueError):
            assert got == want, where


def test_face_search_and_training_reproduce_the_recorded_run(runs):
    observed = _observe(runs)
    if os.environ.get("FACENAR_RECORD_EXPECTED"):
        EXPECTED.write_text(json.dumps(observed, indent=1) + "\n")
    _same(observed, json.loads(EXPECTED.read_text()))


@pytest.mark.parametrize("run,csv_name,key,prefix", [("search", "search.csv", "epoch", "search/"),
                                                     ("train", "train.csv", "step", "")])
def test_tensorboard_has_the_csv_scalars(runs, run, csv_name, key, prefix):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs / run / "tensorboard"))
    events.Reload()
    expected: dict[str, list[tuple[int, float]]] = {}
    for row in _rows(runs / run / csv_name):
        for name, value in row.items():
            try:
                number = float(value)
            except ValueError:
                continue  # empty cells and text (phase, codes) are not scalars
            if name != key:
                expected.setdefault(prefix + name, []).append((int(float(row[key])), number))
    assert sorted(events.Tags()["scalars"]) == sorted(expected)
    for tag, points in expected.items():
        got = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), tag
