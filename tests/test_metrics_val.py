"""VAL@FAR=1e-3 by insightface's rule: the last threshold of the flat FAR run at or below the target,
interpolated to the next one, exactly as its interp1d(kind='slinear') did on scipy <= 1.8."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.model_selection import KFold

from facenar.verify import metrics
from facenar.verify.metrics_reference import old_slinear, reference_evaluate, reference_val_far
from tests.test_metrics import assert_same_report, random_pairs

THR = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
NAN = float("nan")

# (train FAR curve over THR, threshold worked out by hand)
HAND_CASES = [
    # flat runs at 0 and at 5e-4: l = 3, the LAST 5e-4; 0.3 + 0.1 * (1e-3 - 5e-4) / (2e-3 - 5e-4)
    ([0, 0, 5e-4, 5e-4, 2e-3, 1e-2], 0.3 + 0.1 / 3),
    # only zeros below the target: from the last zero (thr 0.2) a third of the way to 0.3
    ([0, 0, 0, 3e-3, 3e-3, 1e-2], 0.2 + 0.1 / 3),
    # a flat run exactly at the target: its last threshold
    ([0, 1e-3, 1e-3, 1e-3, 5e-3, 1e-2], 0.3),
    # the target first reached at the last threshold
    ([0, 0, 0, 0, 5e-4, 1e-3], 0.5),
    # the curve never reaches the target: 0, as insightface
    ([0, 0, 0, 1e-4, 5e-4, 9e-4], 0.0),
    # ends on a flat run at the target: scipy's zero-width knot span gives 0
    ([0, 0, 0, 5e-4, 1e-3, 1e-3], 0.0),
    # no different-identity pairs in the train folds
    ([NAN] * 6, 0.0),
]


@pytest.mark.parametrize("far,want", HAND_CASES)
def test_far_threshold_by_hand_and_as_old_scipy(far, want):
    got = metrics.far_thresholds(np.array([far]), THR, 1e-3)
    assert got.shape == (1,)
    assert got[0] == pytest.approx(want, abs=1e-12)
    if not np.isnan(far).any() and max(far) >= 1e-3:
        assert got[0] == old_slinear(np.array(far), THR)(1e-3)          # bit for bit


def test_far_thresholds_are_per_row():
    curves = np.array([case[0] for case in HAND_CASES])
    np.testing.assert_allclose(metrics.far_thresholds(curves, THR, 1e-3),
                               [case[1] for case in HAND_CASES], atol=1e-12)


def test_old_slinear_on_the_full_grid_matches_the_closed_form():
    """Random flat-run curves on the real 4,000-threshold grid, compared bit for bit."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        negatives = int(rng.integers(200, 5000))
        dist = rng.uniform(0.5, 4.0, negatives) ** rng.uniform(0.3, 3)
        far = np.searchsorted(np.sort(dist), metrics.VAL_THRESHOLDS, side="left") / negatives
        want = old_slinear(far, metrics.VAL_THRESHOLDS)(1e-3) if far.max() >= 1e-3 else 0.0
        assert metrics.far_thresholds(far[None], metrics.VAL_THRESHOLDS, 1e-3)[0] == want


def separable_pairs(seed: int, num_pairs: int, noise: float):
    emb, issame = random_pairs(seed, num_pairs, dim=32, noise=noise)
    return metrics.pair_distances(emb), issame


@pytest.mark.parametrize("num_pairs,noise", [(600, 1.6), pytest.param(6003, 1.3, marks=pytest.mark.slow)])
def test_vectorised_val_equals_loop_oracle(num_pairs, noise):
    """Moderately separable pairs (the first-of-flat-run rule gave VAL 0 on the 600 instead of 0.69);
    6,003 gives uneven folds (601 x 3, 600 x 7)."""
    dist, issame = separable_pairs(num_pairs, num_pairs, noise)
    val, far = metrics.val_far_folds(dist, issame)
    want_val, want_far = reference_val_far(dist, issame, metrics.VAL_THRESHOLDS)
    np.testing.assert_array_equal(val, want_val)
    np.testing.assert_array_equal(far, want_far)
    assert 0.05 < val.mean() < 0.95              # the threshold sits inside the interesting range


def test_ties_on_grid_points_equal_loop_oracle():
    """Many distances exactly on VAL grid thresholds (the `<` boundary) and tied with each other."""
    rng = np.random.default_rng(11)
    num_pairs = 1501
    issame = rng.random(num_pairs) < 0.5
    steps = np.where(issame, rng.integers(0, 900, num_pairs), rng.integers(700, 3999, num_pairs))
    dist = metrics.VAL_THRESHOLDS[steps]
    got = metrics.evaluate_distances(dist, issame)
    assert_same_report(got, reference_evaluate(dist, issame))
    assert got["val"] > 0                  # a real threshold, not the "never reached" 0


def insightface_by_hand(dist, issame):
    """Accuracy and VAL written out directly (broadcast comparisons, sklearn's KFold, a two-point
    np.interp after the last train FAR <= 1e-3): a third implementation for the real-data check."""
    acc_thr, val_thr = np.arange(0, 4, 0.01), np.arange(0, 4, 0.001)
    accuracy, val, far = [], [], []
    for train, test in KFold(n_splits=10).split(dist):
        accept = dist[train][None, :] < acc_thr[:, None]
        best = acc_thr[np.argmax((accept == issame[train]).mean(1))]
        accuracy.append(np.mean((dist[test] < best) == issame[test]))
        negatives = dist[train][~issame[train]]
        far_train = (negatives[None, :] < val_thr[:, None]).mean(1)
        last = min(np.flatnonzero(far_train <= 1e-3)[-1], len(val_thr) - 2)
        threshold = np.interp(1e-3, far_train[last:last + 2], val_thr[last:last + 2])
        accept = dist[test] < threshold
        val.append(np.mean(accept[issame[test]]))
        far.append(np.mean(accept[~issame[test]]))
    return np.mean(accuracy), np.mean(val), np.std(val), np.mean(far)


def test_uneven_folds_match_a_direct_implementation():
    """6,003 pairs: folds of 601 x 3 and 600 x 7, against the broadcast version (fast)."""
    dist, issame = separable_pairs(6003, 6003, 1.3)
    got = metrics.evaluate_distances(dist, issame)
    accuracy, val, val_std, far = insightface_by_hand(dist, issame)
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert (got["val"], got["val_std"], got["far"]) == pytest.approx((val, val_std, far), abs=1e-12)
    assert got["val"] == pytest.approx(0.6324, abs=1e-4)


@pytest.mark.parametrize("column,to_squared_l2", [
    ("Facenet_euclidean_l2", np.square),
    ("VGG-Face_cosine", lambda d: 2.0 * d),
    ("OpenFace_euclidean_l2", np.square),
])
def test_real_model_distances_match_a_direct_implementation(realdata, column, to_squared_l2):
    with open(realdata / "deepface_pairs" / "face-recognition-pivot.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    order = np.random.default_rng(0).permutation(len(rows))   # the file lists all Yes, then all No
    issame = np.array([rows[i]["decision"] == "Yes" for i in order])
    dist = to_squared_l2(np.array([float(rows[i][column]) for i in order]))
    got = metrics.evaluate_distances(dist, issame)
    accuracy, val, val_std, far = insightface_by_hand(dist, issame)
    assert got["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert (got["val"], got["val_std"], got["far"]) == pytest.approx((val, val_std, far), abs=1e-12)
    assert got["val"] > 0                  # a real threshold, not the "never reached" 0
