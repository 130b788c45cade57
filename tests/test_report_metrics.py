"""The report-metric registry of `facenar verify` and its worked example, the equal error rate (eer)."""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from facenar.verify import cli as verify_cli
from facenar.verify.eer import equal_error_rate
from facenar.verify.report import REPORT_METRICS, PairScores, compute_report, table_columns
from tests.test_metrics import read_pivot

ROOT = Path(__file__).resolve().parents[1]
# the report before the registry: its keys and their order (JSON, CSV) do not change
PROTOCOL_KEYS = ("accuracy", "std", "threshold", "val", "val_std", "far", "xnorm", "auc", "pairs")


def oracle_eer(dist, issame) -> float:
    """The usual recipe: sklearn's ROC of score = -distance, and the root of 1 - FAR - TAR(FAR) on its polyline."""
    fpr, tpr, _ = roc_curve(np.asarray(issame, dtype=bool), -np.asarray(dist, dtype=np.float64),
                            drop_intermediate=False)
    return brentq(lambda x: 1 - x - np.interp(x, fpr, tpr), 0, 1, xtol=1e-14)


def test_eer_hand_checked():
    # accept d <= t. ROC points (FAR, TAR): (0, 0), (0, 1/3), (0, 2/3), (1/2, 2/3), (1/2, 1), (1, 1).
    # Between the third and fourth TAR stays 2/3, so FRR = 1/3 while FAR rises from 0 to 1/2: they
    # meet at FAR = FRR = 1/3.
    assert equal_error_rate([0.1, 0.2, 0.3, 0.4, 0.5], [True, True, False, True, False]) == pytest.approx(1 / 3)
    # at t = 0.2 one of two genuine pairs is rejected and one of two impostors accepted: exactly a ROC point
    assert equal_error_rate([0.1, 0.2, 0.3, 0.4], [True, False, True, False]) == 0.5
    assert equal_error_rate([0.1, 0.2, 0.3, 0.4], [True, True, False, False]) == 0.0     # separated
    assert equal_error_rate([0.1, 0.2, 0.3, 0.4], [False, False, True, True]) == 1.0     # the wrong way round
    assert equal_error_rate([1.0, 1.0, 1.0, 1.0], [True, False, True, False]) == 0.5     # all tied: chance
    assert np.isnan(equal_error_rate([0.1, 0.2], [True, True]))                       # one class: undefined
    assert np.isnan(equal_error_rate([0.1, 0.2], [False, False]))


@pytest.mark.parametrize("seed", range(6))
def test_eer_matches_the_root_of_the_roc_polyline(seed):
    rng = np.random.default_rng(seed)
    num = int(rng.integers(10, 600))
    issame = rng.random(num) < rng.uniform(0.1, 0.9)
    issame[:2] = True, False
    dist = rng.normal(0, 1, num) + ~issame * rng.uniform(0, 3)
    if seed % 2:
        dist = np.round(dist, 1)                                    # many ties
    assert equal_error_rate(dist, issame) == pytest.approx(oracle_eer(dist, issame), abs=1e-12)


def test_eer_on_real_model_distances(realdata):
    rows, issame = read_pivot(realdata)                             # 140 genuine and 140 impostor pairs
    # Facenet separates these pairs completely (AUC 1); at one threshold VGG-Face accepts 5 of the 140
    # impostors and rejects 5 of the 140 genuine pairs, OpenFace 38 and 38
    for column, want in (("Facenet_euclidean_l2", 0.0), ("VGG-Face_cosine", 5 / 140),
                         ("OpenFace_euclidean_l2", 38 / 140)):
        dist = np.array([float(row[column]) for row in rows])
        eer = equal_error_rate(dist, issame)
        assert eer == pytest.approx(want, abs=1e-12), column
        assert eer == pytest.approx(oracle_eer(dist, issame), abs=1e-12), column
        # a monotone transform of the distance leaves the EER alone (it only ranks the pairs)
        assert equal_error_rate(np.square(dist), issame) == pytest.approx(eer, abs=1e-12)


def test_registry_keeps_the_old_report_and_adds_eer():
    names = REPORT_METRICS.names()
    assert names[:len(PROTOCOL_KEYS)] == PROTOCOL_KEYS and "eer" in names
    assert all(REPORT_METRICS.summaries()[name] for name in names)
    columns = table_columns()
    assert all(metric.cell is not None for _, metric in columns)
    assert [metric.header for _, metric in columns][:7] == ["pairs", "accuracy %", "threshold", "VAL@FAR=1e-3 %",
                                                            "FAR", "AUC", "XNorm"]
    assert columns[-1][1].header == "EER %"


def test_report_copies_the_protocol_and_computes_eer(tmp_path):
    dist = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    issame = np.array([True, True, False, True, False])
    protocol = {"accuracy": 0.8, "std": 0.4, "threshold": 0.25, "val": float("nan"), "val_std": float("nan"),
                "far": float("nan"), "xnorm": 12.5, "auc": 5 / 6, "pairs": 5}
    report = compute_report(PairScores(dist, issame, protocol))
    assert list(report) == list(REPORT_METRICS.names())
    assert {key: report[key] for key in PROTOCOL_KEYS} == pytest.approx(protocol, nan_ok=True)
    assert report["eer"] == pytest.approx(1 / 3)

    table = verify_cli.format_table({"toy": report}).splitlines()
    assert table[0].split()[-2:] == ["EER", "%"] and table[1].split()[-1] == "33.33"
    assert "n/a" in table[1]                                        # VAL and FAR undefined
    verify_cli.write_json(tmp_path / "r.json", {"toy": report})
    verify_cli.write_csv(tmp_path / "r.csv", {"toy": report})
    assert json.loads((tmp_path / "r.json").read_text())["toy"]["eer"] == pytest.approx(1 / 3)
    with open(tmp_path / "r.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    assert float(row["eer"]) == pytest.approx(1 / 3) and row["val"] == ""
    assert list(row)[1:] == list(REPORT_METRICS.names())


def test_verify_help_lists_every_report_metric():
    epilog = verify_cli.build_parser().epilog
    for name, summary in REPORT_METRICS.summaries().items():
        assert f"{name}: {summary}" in epilog


def test_the_extending_page_shows_the_real_metric_file():
    """The worked example in docs/extending.md is copied from facenar/verify/eer.py, not paraphrased."""
    page = (ROOT / "docs" / "extending.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n# facenar/verify/(\w+\.py)\n(.*?)```", page, re.S)
    assert [name for name, _ in blocks] == ["eer.py", "report.py"]
    for name, block in blocks:
        source = (ROOT / "facenar" / "verify" / name).read_text(encoding="utf-8")
        assert block.strip() in source, name
