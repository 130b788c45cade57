"""A deliberately plain loop version of the verification protocol: the oracle for facenar.verify.metrics.

It walks folds x thresholds the way insightface's eval/verification.py does (one numpy pass over
the pairs per threshold), shares no code with facenar.verify.metrics, and is what the exactness tests
and `benchmarks.verification` compare the vectorised version against. Not for production use:
it is ~100x slower. The NaN rules for a missing class mirror facenar.verify.metrics' documented ones.
VAL's threshold comes from scipy's own B-spline evaluator set up as scipy <= 1.8's interp1d
(old_slinear), not from facenar.verify.metrics' closed form.
"""
from __future__ import annotations

import numpy as np
from scipy.interpolate import BSpline


def _folds(num_pairs: int, num_folds: int) -> list[np.ndarray]:
    """Held-out index sets: contiguous, the first num_pairs % num_folds one larger."""
    folds, start = [], 0
    for fold in range(num_folds):
        size = num_pairs // num_folds + (1 if fold < num_pairs % num_folds else 0)
        folds.append(np.arange(start, start + size))
        start += size
    return folds


def _ratio(num, den) -> float:
    return float(num) / float(den) if den else float("nan")


def _counts(threshold: float, dist: np.ndarray, issame: np.ndarray) -> tuple[int, int, int, int]:
    accept = np.less(dist, threshold)
    tp = int(np.sum(accept & issame))
    fp = int(np.sum(accept & ~issame))
    tn = int(np.sum(~accept & ~issame))
    fn = int(np.sum(~accept & issame))
    return tp, fp, tn, fn


def reference_accuracy(dist, issame, thresholds, num_folds=10) -> tuple[np.ndarray, np.ndarray]:
    """Held-out accuracy per fold and the chosen threshold, by explicit loops."""
    dist, issame = np.asarray(dist, dtype=np.float64), np.asarray(issame, dtype=bool)
    accuracy, chosen = [], []
    for test in _folds(len(dist), num_folds):
        train = np.setdiff1d(np.arange(len(dist)), test)
        train_acc = np.zeros(len(thresholds))
        for index, threshold in enumerate(thresholds):
            tp, _, tn, _ = _counts(threshold, dist[train], issame[train])
            train_acc[index] = float(tp + tn) / len(train)
        best = int(np.argmax(train_acc))
        tp, _, tn, _ = _counts(thresholds[best], dist[test], issame[test])
        accuracy.append(float(tp + tn) / len(test))
        chosen.append(thresholds[best])
    return np.array(accuracy), np.array(chosen)


def old_slinear(x, y):
    """scipy <= 1.8's `interp1d(x, y, kind='slinear')`, which insightface's VAL relies on and newer
    scipy refuses when x repeats: a stable sort of x, then make_interp_spline(k=1)'s knots
    [x0, x..., x_last] with coefficients y, evaluated by scipy's own B-spline code."""
    order = np.argsort(x, kind="mergesort")
    xs, ys = np.asarray(x, dtype=np.float64)[order], np.asarray(y, dtype=np.float64)[order]
    return BSpline.construct_fast(np.r_[xs[0], xs, xs[-1]], ys, 1)


def reference_val_far(dist, issame, thresholds, far_target=1e-3,
                      num_folds=10) -> tuple[np.ndarray, np.ndarray]:
    """Held-out VAL and FAR per fold, by explicit loops, thresholds as insightface's calculate_val."""
    dist, issame = np.asarray(dist, dtype=np.float64), np.asarray(issame, dtype=bool)
    val, far = [], []
    for test in _folds(len(dist), num_folds):
        train = np.setdiff1d(np.arange(len(dist)), test)
        far_train = []
        for threshold in thresholds:
            _, fp, tn, _ = _counts(threshold, dist[train], issame[train])
            far_train.append(_ratio(fp, fp + tn))
        far_train = np.array(far_train)
        threshold = 0.0
        if not np.isnan(far_train).any() and far_train.max() >= far_target:
            threshold = float(old_slinear(far_train, thresholds)(far_target))
        tp, fp, tn, fn = _counts(threshold, dist[test], issame[test])
        val.append(_ratio(tp, tp + fn))
        far.append(_ratio(fp, fp + tn))
    return np.array(val), np.array(far)


def reference_auc(dist, issame) -> float:
    """Probability that a same pair is closer than a different pair (ties count one half)."""
    dist, issame = np.asarray(dist, dtype=np.float64), np.asarray(issame, dtype=bool)
    pos, neg = dist[issame], dist[~issame]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    wins = 0.0
    for d in pos:
        wins += np.sum(d < neg) + 0.5 * np.sum(d == neg)
    return float(wins / (len(pos) * len(neg)))


def reference_evaluate(dist, issame, num_folds=10) -> dict:
    """The same report as facenar.verify.metrics.evaluate_distances, from the loops above."""
    issame = np.asarray(issame, dtype=bool)
    accuracy, chosen = reference_accuracy(dist, issame, np.arange(0, 4, 0.01), num_folds)
    val, far = reference_val_far(dist, issame, np.arange(0, 4, 0.001), 1e-3, num_folds)
    one_class = bool(issame.all() or not issame.any())
    val_ok, far_ok = val[~np.isnan(val)], far[~np.isnan(far)]
    nan = float("nan")
    return {
        "accuracy": float(np.mean(accuracy)),
        "std": float(np.std(accuracy)),
        "threshold": float(np.mean(chosen)),
        "val": nan if one_class or not len(val_ok) else float(np.mean(val_ok)),
        "val_std": nan if one_class or not len(val_ok) else float(np.std(val_ok)),
        "far": nan if one_class or not len(far_ok) else float(np.mean(far_ok)),
        "auc": reference_auc(dist, issame),
        "pairs": len(issame),
    }
