"""The eer report metric: the equal error rate, where the false accept rate equals the false reject rate.

Computed over all pairs of a bench (no folds, no threshold grid), from the pair distances alone, so it
says how separable the two classes are without insightface's protocol choices. It is the worked
example of docs/extending.md: this file is the whole metric, and its module name in
facenar.verify.report.REPORT_METRICS puts it in `facenar verify`'s table, JSON and CSV.
"""
from __future__ import annotations

import numpy as np

from facenar.verify.report import REPORT_METRICS, PairScores, ReportMetric, number


def equal_error_rate(distances: np.ndarray, issame: np.ndarray) -> float:
    """EER as a fraction; NaN without both same- and different-identity pairs.

    Accepting the pairs with distance <= t, every distinct distance t gives one point (FAR, TAR) of the
    ROC curve, from (0, 0) to (1, 1). The EER is where the straight lines between those points cross
    FAR = FRR (= 1 - TAR): what `brentq(lambda x: 1 - x - interp(x, far, tar), 0, 1)` finds (tested).
    """
    distances, issame = np.asarray(distances, dtype=np.float64), np.asarray(issame, dtype=bool)
    positives, negatives = int(issame.sum()), int((~issame).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(distances, kind="stable")
    ranked, same = distances[order], issame[order]
    last_of_tie = np.r_[ranked[1:] != ranked[:-1], True]     # one ROC point per distinct distance
    tar = np.r_[0, np.cumsum(same)[last_of_tie]] / positives
    far = np.r_[0, np.cumsum(~same)[last_of_tie]] / negatives
    gap = far - (1 - tar)                                   # FAR - FRR: non-decreasing from -1 to 1
    i = int(np.argmax(gap >= 0))                            # the first point at or past the crossing
    if gap[i] == 0:
        return float(far[i])
    weight = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(far[i - 1] + weight * (far[i] - far[i - 1]))


def eer(scores: PairScores) -> float:
    """The report's value for one bench, from its pair distances and labels."""
    return equal_error_rate(scores.distances, scores.issame)


REPORT_METRICS.register("eer", summary="equal error rate over all pairs (where FAR = FRR on the ROC curve)")(
    ReportMetric(compute=eer, header="EER %", cell=lambda report: number(report["eer"], 2, 100)))
