"""A deliberately plain loop version of the verification protocol: the oracle for facenar.metrics.

It walks folds x thresholds the way insightface's eval/verification.py does (one numpy pass over
the pairs per threshold), shares no code with facenar.metrics, and is what the exactness tests
and `benchmarks.verification` compare the vectorised version against. Not for production use:
it is ~100x slower. The NaN rules for a missing class mirror facenar.metrics' documented ones.
"""
from __future__ import annotations

import numpy as np


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


def reference_val_far(dist, issame, thresholds, far_target=1e-3,
                      num_folds=10) -> tuple[np.ndarray, np.ndarray]:
    """Held-out VAL and FAR per fold, by explicit loops."""
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
            # Collapse repeated FAR values (keep the first threshold of each), then interpolate.
            xs, ys = [], []
            for value, thr in zip(far_train, thresholds):
                if value not in xs:
                    xs.append(value)
                    ys.append(thr)
            order = np.argsort(xs, kind="stable")
            threshold = float(np.interp(far_target, np.array(xs)[order], np.array(ys)[order]))
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
    """The same report as facenar.metrics.evaluate_distances, from the loops above."""
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
