"""IJB-B / IJB-C scoring, vectorised and chunked, equal to insightface's loops on the same features.

insightface's procedure (arcface_torch/eval_ijbc.py for 1:1, _evaluation_/ijb/ijb_evals.py for 1:N)
loops over templates (np.where over all images for each) and media; on IJB-C that is 23,124 x
469,375 comparisons. Here one stable sort groups the images by (template, media) and
np.add.reduceat sums each group in float32, row after row, the same additions in the same order as
their np.mean / np.sum, so the numbers are equal, not close (facenar.verify.ijb_reference is the loop
oracle the tests compare against). Memory: pooling gathers POOL_ROWS image rows at a time, scoring
SCORE_ROWS pairs (two float64 rows each), 1:N PROBE_ROWS probes x the gallery; the ROC keeps a
sorted copy of the negative scores (8 bytes a pair) and a point per positive, never the full curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facenar_runtime.cli import progress

FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
# insightface's FPIR grid is 10 ** np.arange(-4, 0, 0.04) + [1]; its "0.01" and "0.1" are entries 50 and
# 75, which are 0.01000000000000004 and 0.10000000000000062: used as they are, so thresholds agree
_FPIR_GRID = 10 ** np.arange(-4, 0, 4 / 100)
FPIRS = {"0.01": float(_FPIR_GRID[50]), "0.1": float(_FPIR_GRID[75])}
RANKS = (1, 5, 10)
POOL_ROWS = 1 << 15
SCORE_ROWS = 1 << 13
PROBE_ROWS = 1 << 10


def image_features(embs: np.ndarray, embs_flip: np.ndarray | None, faceness: np.ndarray, keep_norm: bool = True,
                   detector_score: bool = True, flip: bool = True) -> np.ndarray:
    """Per-image features as eval_ijbc.py forms them (N1 D1 F1 by default), float32."""
    feats = embs + embs_flip if flip and embs_flip is not None else embs
    if not keep_norm:
        feats = feats / np.sqrt(np.sum(feats ** 2, -1, keepdims=True))
    if detector_score:
        feats = feats * faceness[:, np.newaxis]
    return feats


def pool_templates(feats: np.ndarray, templates: np.ndarray, medias: np.ndarray,
                   rows: int = POOL_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique template ids, L2-normalised template features float64).

    A template's feature is the sum over its media (ascending media id) of the mean of the media's
    images (file order), accumulated in the features' dtype, then L2-normalised in float64.
    """
    from sklearn.preprocessing import normalize

    order = np.lexsort((medias, templates))            # stable: file order within each media
    t_sorted, m_sorted = templates[order], medias[order]
    new_template = np.r_[True, t_sorted[1:] != t_sorted[:-1]]
    new_media = new_template | np.r_[True, m_sorted[1:] != m_sorted[:-1]]
    template_starts = np.flatnonzero(new_template)
    ids = t_sorted[template_starts]
    out = np.zeros((len(ids), feats.shape[1]))
    bounds = np.r_[template_starts, len(order)]
    first = 0
    with _bar(len(ids), "template pooling") as tick:
        while first < len(ids):
            last = max(first + 1, int(np.searchsorted(bounds, bounds[first] + rows, "right")) - 1)
            last = min(last, len(ids))
            lo, hi = bounds[first], bounds[last]
            media_starts = np.flatnonzero(new_media[lo:hi])
            counts = np.diff(np.r_[media_starts, hi - lo])
            sums = segment_sums(feats[order[lo:hi]], media_starts, counts)
            means = (sums / counts[:, None].astype(np.intp)).astype(feats.dtype)
            media_template = np.flatnonzero(new_template[lo:hi][media_starts])
            out[first:last] = segment_sums(means, media_template, np.diff(np.r_[media_template, len(means)]))
            tick(last - first)
            first = last
    return ids, normalize(out)


def segment_sums(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Sum of each run values[start:start+count], row after row in values' dtype (as np.sum(axis=0) adds).

    np.add.reduceat would be one call, but it adds pairwise, so its float32 sums differ from
    insightface's in the last bits; here step k adds row k of every run longer than k.
    """
    by_length = np.argsort(-counts, kind="stable")
    s, c = starts[by_length], counts[by_length]
    out = values[s].copy()
    longer = np.searchsorted(-c, -np.arange(1, int(c.max(initial=1))), "left")  # runs longer than k
    for k, n in enumerate(longer, start=1):
        out[:n] += values[s[:n] + k]
    result = np.empty_like(out)
    result[by_length] = out
    return result


class _bar:
    """A progress bar over `total` units, advanced by calling the context value with a count."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc = total, desc

    def __enter__(self):
        bar = progress(iter(()), total=self.total, desc=self.desc)
        self.bar = bar if hasattr(bar, "update") else None
        return (lambda n: self.bar.update(n)) if self.bar else (lambda n: None)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.close()


def template_rows(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row of each wanted template id in `ids` (sorted), and a mask of the ids that have no row."""
    rows = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return rows, ids[rows] != wanted


def score_pairs(template_feats: np.ndarray, rows1: np.ndarray, rows2: np.ndarray,
                chunk: int = SCORE_ROWS) -> np.ndarray:
    """Cosine of each template pair (rows into template_feats), in pair order, float64."""
    scores = np.empty(len(rows1))
    with _bar(len(rows1), "pair scores") as tick:
        for start in range(0, len(rows1), chunk):
            stop = start + chunk
            scores[start:stop] = np.sum(template_feats[rows1[start:stop]] * template_feats[rows2[start:stop]], -1)
            tick(min(stop, len(rows1)) - start)
    return scores


@dataclass
class Roc:
    """The points sklearn.metrics.roc_curve (defaults) returns, in its order (FPR ascending)."""
    fpr: np.ndarray
    tpr: np.ndarray
    negatives: np.ndarray        # the negative scores, sorted ascending (for the strict column)
    positives: np.ndarray        # the positive scores, sorted ascending


def roc(labels: np.ndarray, scores: np.ndarray) -> Roc:
    """roc_curve(labels, scores) with drop_intermediate, built from the tie structure only.

    Sorted by decreasing score, each distinct value steps the counts by (negatives, positives)
    equal to it; sklearn keeps the first and last point and every point whose step differs from
    the next one. A step other than (1, 0) needs a positive or a tied negative there, so only
    those values and their neighbours are visited: O(positives + ties) after one sort of the negatives.
    """
    labels = np.asarray(labels, bool)
    neg = scores[~labels]
    neg.sort()
    pos = np.sort(scores[labels])
    n, p = len(neg), len(pos)
    tied = neg[1:][neg[1:] == neg[:-1]]
    special = np.unique(np.concatenate([pos, tied]))[::-1]           # descending distinct values
    fps, tps = n - np.searchsorted(neg, special, "left"), p - np.searchsorted(pos, special, "left")
    dn, dp = fps - (n - np.searchsorted(neg, special, "right")), tps - (p - np.searchsorted(pos, special, "right"))
    below_n, below_p = np.searchsorted(neg, special, "left") - 1, np.searchsorted(pos, special, "left") - 1
    below = np.maximum(np.where(below_n >= 0, neg[np.maximum(below_n, 0)], -np.inf),
                       np.where(below_p >= 0, pos[np.maximum(below_p, 0)], -np.inf))
    has_below = (below_n >= 0) | (below_p >= 0)
    next_special = np.r_[special[1:] == below[:-1], False]
    next_dn = np.where(next_special, np.r_[dn[1:], 0], 1)
    next_dp = np.where(next_special, np.r_[dp[1:], 0], 0)
    above = fps - dn + tps - dp                                       # scores above the value
    keep = ~has_below | (above == 0) | (dn != next_dn) | (dp != next_dp)
    # the (ordinary, single-negative) value just above a special one ends a run: kept
    above_n = np.searchsorted(neg, special, "right")
    above_p = np.searchsorted(pos, special, "right")
    above_value = np.minimum(np.where(above_n < n, neg[np.minimum(above_n, n - 1)], np.inf),
                             np.where(above_p < p, pos[np.minimum(above_p, p - 1)], np.inf))
    prev_special = np.r_[False, special[:-1] == above_value[1:]]
    ordinary_before = (above > 0) & ~prev_special
    fp_points = np.r_[fps[keep], fps[ordinary_before] - dn[ordinary_before], n]
    tp_points = np.r_[tps[keep], tps[ordinary_before] - dp[ordinary_before], p]
    if n and (len(special) == 0 or neg[-1] > special[0]):             # the top value is a lone negative
        fp_points, tp_points = np.r_[fp_points, 1], np.r_[tp_points, 0]
    _, first = np.unique(fp_points + tp_points, return_index=True)
    fps_kept, tps_kept = np.r_[0, fp_points[first]], np.r_[0, tp_points[first]]
    return Roc(fps_kept / n if n else fps_kept * np.nan, tps_kept / p if p else tps_kept * np.nan, neg, pos)


def tar_at_far(curve: Roc, far: float) -> float:
    """insightface's rule: arrays reversed, the FPR closest to `far`; ties go to the larger TPR."""
    fpr, tpr = curve.fpr[::-1], curve.tpr[::-1]
    return float(tpr[np.argmin(np.abs(fpr - far))])


def tar_at_far_strict(curve: Roc, far: float) -> float:
    """The largest TPR of any score threshold whose FPR <= `far` (the attainable operating point)."""
    n = len(curve.negatives)
    allowed = min(n, int(math.floor(far * n)))
    while allowed < n and (allowed + 1) / n <= far:
        allowed += 1
    while allowed > 0 and allowed / n > far:
        allowed -= 1
    if allowed >= n:
        return 1.0
    cut = curve.negatives[n - 1 - allowed]                         # the (allowed+1)-th largest negative
    pos = curve.positives
    return float((len(pos) - np.searchsorted(pos, cut, "right")) / len(pos))


def auc(curve: Roc) -> float:
    return float(np.trapezoid(curve.tpr, curve.fpr))


@dataclass
class Identification:
    """One gallery's 1:N counts (ijb_evals.py's evaluation_1N)."""
    top: dict                     # rank -> mated probes with the mate within that rank
    mated: int
    tpir: dict                    # FPIR key -> TPIR


def identify(probe_feats: np.ndarray, probe_subjects: np.ndarray, gallery_feats: np.ndarray,
             gallery_subjects: np.ndarray, chunk: int = PROBE_ROWS) -> Identification:
    """Rank-k hits, and TPIR at each FPIR with thresholds from the non-mated probes' top scores."""
    first_mate = {}
    for index, subject in enumerate(gallery_subjects.tolist()):
        first_mate.setdefault(subject, index)
    mate = np.array([first_mate.get(s, -1) for s in probe_subjects.tolist()], dtype=np.intp)
    top = dict.fromkeys(RANKS, 0)
    pos_sims, correct, non_mated_max = [], [], []
    with _bar(len(probe_feats), "1:N probes") as tick:
        for start in range(0, len(probe_feats), chunk):
            sim = np.dot(probe_feats[start:start + chunk], gallery_feats.T)
            m = mate[start:start + chunk]
            mated = m >= 0
            rows = np.flatnonzero(mated)
            if len(rows):
                ranked = np.argsort(sim[rows], axis=1)[:, ::-1]
                rank = np.argmax(ranked == m[rows, None], axis=1)
                for k in RANKS:
                    top[k] += int(np.sum(rank < k))
                same = gallery_subjects[None, :] == probe_subjects[start:start + chunk][rows, None]
                positive = sim[rows, m[rows]]
                pos_sims.append(positive)
                correct.append(positive > np.where(same, -np.inf, sim[rows]).max(axis=1))
            non_mated_max.append(sim[~mated].max(axis=1))
            tick(len(m))
    pos = np.concatenate(pos_sims) if pos_sims else np.empty(0)
    ok = np.concatenate(correct) if correct else np.empty(0, bool)
    ranked_non_mated = np.sort(np.concatenate(non_mated_max))[::-1]
    tpir = {}
    for key, fpir in FPIRS.items():
        if len(pos) == 0 or len(ranked_non_mated) == 0:
            tpir[key] = float("nan")
            continue
        thresh = ranked_non_mated[max(int(len(ranked_non_mated) * fpir) - 1, 0)]
        tpir[key] = float(np.logical_and(ok, pos > thresh).sum() / len(pos))
    return Identification(top, len(pos), tpir)
