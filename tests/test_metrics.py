"""The vectorised protocol equals the plain-loop oracle (and scikit-learn) to 1e-9."""
from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold
from sklearn.preprocessing import normalize

from facenar_runtime.errors import UserError
from facenar.verify import metrics
from facenar.verify.metrics_reference import reference_evaluate

KEYS = ("accuracy", "std", "threshold", "val", "val_std", "far", "auc", "pairs")


def assert_same_report(got: dict, want: dict) -> None:
    assert set(got) == set(KEYS)
    for key in KEYS:
        if isinstance(want[key], float) and math.isnan(want[key]):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(want[key], abs=1e-9), key


def random_pairs(seed: int, num_pairs: int, dim: int = 16, noise: float = 0.7):
    """Normalised embeddings of random pairs with random labels, like a weak face model."""
    rng = np.random.default_rng(seed)
    issame = rng.random(num_pairs) < 0.5
    first = rng.normal(size=(num_pairs, dim))
    second = np.where(issame[:, None], first + noise * rng.normal(size=(num_pairs, dim)),
                      rng.normal(size=(num_pairs, dim)))
    emb = np.empty((2 * num_pairs, dim))
    emb[0::2], emb[1::2] = first, second
    return metrics.l2_normalize(emb), issame


@pytest.mark.filterwarnings("ignore:some folds lack a class")   # 4-pair folds may hold one class
@pytest.mark.parametrize("seed,num_pairs", [(0, 600), (1, 1003), (3, 40)])
def test_random_embeddings_match_reference(seed, num_pairs):
    emb, issame = random_pairs(seed, num_pairs)
    dist = metrics.pair_distances(emb)
    assert_same_report(metrics.evaluate_distances(dist, issame), reference_evaluate(dist, issame))


@pytest.mark.parametrize("grid", [metrics.ACC_THRESHOLDS, metrics.VAL_THRESHOLDS])
def test_distances_on_the_threshold_grid_match_reference(grid):
    """Distances exactly equal to grid thresholds and to each other: the `<` boundary and ties."""
    rng = np.random.default_rng(7)
    num_pairs = 513
    issame = rng.random(num_pairs) < 0.5
    index = np.where(issame, rng.integers(0, 160, num_pairs), rng.integers(60, 300, num_pairs))
    dist = grid[np.minimum(index * (len(grid) // 400), len(grid) - 1)]
    assert len(np.unique(dist)) < num_pairs / 2
    got = metrics.evaluate_distances(dist, issame)
    assert_same_report(got, reference_evaluate(dist, issame))
    assert got["auc"] == pytest.approx(roc_auc_score(issame, -dist), abs=1e-12)


def read_pivot(realdata):
    with open(realdata / "deepface_pairs" / "face-recognition-pivot.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    issame = np.array([row["decision"] == "Yes" for row in rows])
    return rows, issame


@pytest.mark.parametrize("column,to_squared_l2,shuffle", [
    ("Facenet_euclidean_l2", np.square, False),      # L2 of unit vectors: squared is in [0, 4]
    ("Facenet_euclidean_l2", np.square, True),       # file order is 140 Yes then 140 No: mix folds too
    ("VGG-Face_cosine", lambda d: 2.0 * d, True),    # cosine distance of unit vectors x 2 = squared L2
])
def test_real_model_distances_match_reference_and_sklearn(realdata, column, to_squared_l2, shuffle):
    rows, issame = read_pivot(realdata)
    dist = to_squared_l2(np.array([float(row[column]) for row in rows]))
    if shuffle:
        order = np.random.default_rng(0).permutation(len(dist))
        dist, issame = dist[order], issame[order]
    assert len(dist) == 280 and issame.sum() == 140
    assert dist.min() >= 0 and dist.max() <= 4
    if shuffle:
        got = metrics.evaluate_distances(dist, issame)
    else:
        with pytest.warns(UserWarning, match="some folds lack a class"):
            got = metrics.evaluate_distances(dist, issame)
    assert_same_report(got, reference_evaluate(dist, issame))
    assert got["auc"] == pytest.approx(roc_auc_score(issame, -dist), abs=1e-9)
    assert got["accuracy"] > 0.6          # real face models separate these pairs


def test_fold_ids_follow_sklearn_kfold():
    for num_pairs in (10, 37, 6000, 7003):
        ids = metrics.fold_ids(num_pairs)
        kfold = KFold(n_splits=10, shuffle=False).split(np.arange(num_pairs))
        for fold, (_, test) in enumerate(kfold):
            np.testing.assert_array_equal(np.flatnonzero(ids == fold), test)


def test_too_few_pairs_is_a_user_error():
    with pytest.raises(UserError, match="at least 10 pairs"):
        metrics.evaluate_distances(np.zeros(9), np.ones(9, bool))


def test_all_positive_labels_give_accuracy_and_nan_rates():
    emb, _ = random_pairs(5, 30)
    dist = metrics.pair_distances(emb)
    issame = np.ones(30, bool)
    with pytest.warns(UserWarning, match="no different-identity pairs"):
        got = metrics.evaluate_distances(dist, issame, name="small_lfw")
    assert 0.5 < got["accuracy"] <= 1.0 and got["pairs"] == 30
    for key in ("val", "val_std", "far", "auc"):
        assert math.isnan(got[key])
    assert_same_report(got, reference_evaluate(dist, issame))


def test_normalize_and_distances_match_sklearn():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(20, 8)).astype(np.float32)
    raw[3] = 0
    np.testing.assert_allclose(metrics.l2_normalize(raw), normalize(raw.astype(np.float64)), atol=1e-15)
    emb = metrics.l2_normalize(raw)
    want = [np.sum((emb[2 * i] - emb[2 * i + 1]) ** 2) for i in range(10)]
    np.testing.assert_allclose(metrics.pair_distances(emb), want, atol=1e-15)


def test_roc_curve_is_monotone_and_integrates_to_auc():
    emb, issame = random_pairs(11, 400)
    dist = np.round(metrics.pair_distances(emb), 2)          # force ties
    fpr, tpr = metrics.roc_curve(dist, issame)
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)
    assert area == pytest.approx(metrics.roc_auc(dist, issame), abs=1e-12)
