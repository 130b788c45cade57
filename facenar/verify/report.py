"""The verification report's metrics: a registry of what `facenar verify` prints, and writes to --json / --csv.

Each bench's report is one value per registered metric, computed from the bench's `PairScores` (the
pair distances and labels, and the numbers the insightface protocol already gave), in registration
order: that order is the JSON keys' and the CSV columns'. A metric with a `header` is also a column of
the printed table (at its `column` position; `cell` formats it from the bench's whole report). The
protocol itself stays in facenar.verify.metrics and is not changed by adding a metric: the built-in
entries below only copy its numbers. A new metric is a module that registers one more entry, named
in `REPORT_METRICS`' modules (facenar/verify/eer.py is the worked example of docs/extending.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from facenar.registry import Registry


@dataclass(frozen=True)
class PairScores:
    """What a report metric is computed from, for one bench."""

    distances: np.ndarray               # float64 [P]: squared L2 distance of each pair's normalised embeddings
    issame: np.ndarray                  # bool [P]: True for a same-identity pair
    protocol: Mapping[str, float]       # facenar.verify.metrics.evaluate_distances' numbers, plus "xnorm"


@dataclass(frozen=True)
class ReportMetric:
    """One value of the report. `compute` may give NaN (undefined: no different-identity pairs, say), which
    the table shows as `n/a`, the JSON as null and the CSV as an empty cell."""

    compute: Callable[[PairScores], float | int]
    header: str | None = None               # the table column's header; None: JSON / CSV only (or in another's cell)
    cell: Callable[[Mapping[str, float]], str] | None = None    # the bench's report -> the table cell
    column: int = 100                       # the table column's position (built-ins 0-6; ties: registration order)


REPORT_METRICS: Registry[ReportMetric] = Registry("report metric", modules=(__name__, "facenar.verify.eer"))


def number(value: float, digits: int, scale: float = 1.0) -> str:
    """A table cell: `value * scale` with `digits` decimals, or n/a for NaN."""
    return "n/a" if math.isnan(value) else f"{value * scale:.{digits}f}"


def _protocol(key: str, summary: str, header: str | None = None,
              cell: Callable[[Mapping[str, float]], str] | None = None, column: int = 100) -> None:
    """A built-in entry: a number the protocol (or, for xnorm, the embedding step) computed already."""
    REPORT_METRICS.register(key, summary=summary)(
        ReportMetric(lambda scores: scores.protocol[key], header, cell, column))


# the report as it was before the registry: these keys, in this order, with these table columns
_protocol("accuracy", "10-fold verification accuracy, mean over the folds", "accuracy %",
          lambda r: f"{number(r['accuracy'], 2, 100)} +- {number(r['std'], 2, 100)}", column=1)
_protocol("std", "population std of the 10 folds' accuracies (shown in the accuracy column)")
_protocol("threshold", "distance threshold chosen on the train folds, mean over the folds", "threshold",
          lambda r: number(r["threshold"], 3), column=2)
_protocol("val", "VAL (true accept rate) at FAR=1e-3, insightface's rule, mean over the folds", "VAL@FAR=1e-3 %",
          lambda r: "n/a" if math.isnan(r["val"]) else f"{number(r['val'], 2, 100)} +- {number(r['val_std'], 2, 100)}",
          column=3)
_protocol("val_std", "population std of the folds' VAL (shown in the VAL column)")
_protocol("far", "the held-out FAR at VAL's threshold, mean over the folds", "FAR",
          lambda r: "n/a" if math.isnan(r["far"]) else f"{r['far']:.2e}", column=4)
_protocol("xnorm", "mean L2 norm of the raw embeddings (plain and mirrored)", "XNorm",
          lambda r: number(r["xnorm"], 3), column=6)
_protocol("auc", "area under the ROC curve over all pairs (ties count one half)", "AUC",
          lambda r: number(r["auc"], 4), column=5)
_protocol("pairs", "number of pairs in the bench", "pairs", lambda r: str(r["pairs"]), column=0)


def compute_report(scores: PairScores) -> dict[str, float | int]:
    """{metric name: value} for one bench, in the registry's order."""
    return {name: REPORT_METRICS.get(name).compute(scores) for name in REPORT_METRICS}


def table_columns() -> list[tuple[str, ReportMetric]]:
    """(name, metric) of every metric with a table column, in column order."""
    order = {name: index for index, name in enumerate(REPORT_METRICS)}
    shown = [(name, REPORT_METRICS.get(name)) for name in REPORT_METRICS if REPORT_METRICS.get(name).header]
    return sorted(shown, key=lambda item: (item[1].column, order[item[0]]))
