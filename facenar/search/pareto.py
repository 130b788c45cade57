"""The Pareto front of derivation's scored architectures: shared-weight accuracy on the whole val split
against multiply-adds, parameters and (with a latency table) predicted milliseconds.

A user picks by budget, not by the argmax of a reward: pareto.json lists every scored architecture
with its costs, whether it is within the budget and on which fronts it lies (no other point is at
least as accurate and at most as costly, and better in one); pareto.png draws accuracy against MACs
(and the other costs), the budget line and the pick.
"""
from __future__ import annotations

import json
from pathlib import Path

from facenar_runtime.atomic import write_text_atomic

COSTS = ("macs", "params", "latency_ms")
LABELS = {"macs": "multiply-adds", "params": "parameters", "latency_ms": "predicted latency (ms)"}


def front(points: list[dict], cost: str) -> list[int]:
    """Indices of the non-dominated points (higher accuracy, lower `cost`), cheapest first."""
    order = sorted(range(len(points)), key=lambda i: (points[i][cost], -points[i]["accuracy"]))
    kept, best = [], None
    for i in order:
        if best is None or points[i]["accuracy"] > best:
            kept.append(i)
            best = points[i]["accuracy"]
    return kept


def mark_fronts(points: list[dict]) -> list[dict]:
    """Each point gains "front": the costs on whose front it lies."""
    costs = [c for c in COSTS if points and c in points[0]]
    fronts = {c: set(front(points, c)) for c in costs}
    return [{**p, "front": [c for c in costs if i in fronts[c]]} for i, p in enumerate(points)]


def write_pareto(json_path: Path, png_path: Path, points: list[dict], pick: int, limits: dict,
                 scored_with: dict) -> None:
    """pareto.json (every point, the pick's index, the limits, what the accuracies were scored with:
    RewardModel.stamp) and pareto.png, both atomic."""
    write_text_atomic(json_path, json.dumps({"limits": limits, "pick": pick, "points": points,
                                             "scored_with": scored_with}, indent=1) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facenar.search.record import save_png

    costs = [c for c in COSTS if c in points[0]]
    fig, axes = plt.subplots(1, len(costs), figsize=(5 * len(costs), 4), squeeze=False)
    for ax, cost in zip(axes[0], costs):
        for source in dict.fromkeys(p["source"] for p in points):
            mine = [p for p in points if p["source"] == source]
            ax.scatter([p[cost] for p in mine], [p["accuracy"] for p in mine], s=14, label=source, alpha=0.7)
        line = front(points, cost)
        ax.step([points[i][cost] for i in line], [points[i]["accuracy"] for i in line], where="post", color="k",
                lw=1, label="Pareto front")
        ax.scatter([points[pick][cost]], [points[pick]["accuracy"]], marker="*", s=180, color="red", zorder=5,
                   label="pick (arch.json)")
        if cost in limits:
            ax.axvline(limits[cost], color="red", ls="--", lw=1, label="budget")
        ax.set_xlabel(LABELS[cost])
        ax.set_ylabel("shared-weight accuracy (whole val split)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, png_path)
