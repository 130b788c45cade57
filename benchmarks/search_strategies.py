"""Search strategies: speed ratios measured in one run on the demo proxy (issue 20's targets).

(1) a `random` search epoch against an `enas` epoch at the same shared-weight steps (post-PreTrain
epochs; shared training + the strategy's learning, timed around SearchEngine._train_shared and _learn);
(2) `derive` for a new budget (half-way between the cheapest and the dearest scored architecture)
against the wall time of the search it derives from, as a user runs it (reusing the search's own
scores where the weights are the same) and with --rescore (every candidate scored again); (3)
`evolution` derivation against `enas` derivation on the same run, both with --rescore and scoring
the same number of candidates on the whole val split (evolution first scores its first population on
val minibatches, which is counted in its time).

    python -m benchmarks.search_strategies [--quick]
"""
from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch

from benchmarks.common import Section, benchmark_main, machine_info, median
from benchmarks.search_cost import PhaseTimer
from facenar_runtime.cli import run_cli

COLUMNS = ["measure", "seconds", "reference", "reference_s", "ratio", "target"]


def _settings(quick: bool) -> dict:
    # quick: 1 PreTrain + 1 strategy epoch of 10 minibatches, 3 x 10 controller samples (evolution: 30
    # cycles), derivation from 4 + 2 architectures; the demo preset's 60 steps and 15 x 10 samples otherwise
    if quick:
        return dict(epochs=2, pretrain_epochs=1, steps_per_epoch=10, controller_steps=3, evolution_cycles=30,
                    derive_samples=4, random_samples=2)
    return {}


def timed_search(folder: Path, overrides: dict) -> tuple[float, list[float]]:
    """A whole demo search in `folder`: its wall seconds and the per-epoch seconds after PreTrain."""
    from facenar.dist import DistContext
    from facenar.rundir import RunDir
    from facenar.search.config import resolve_config
    from facenar.search.engine import SearchEngine

    cfg = resolve_config({"preset": "demo", **overrides}, None)
    engine = SearchEngine(cfg, RunDir.create(folder, cfg.to_dict()), DistContext(0, 1, 0, torch.device("cpu")))
    engine.data.val_set(engine.device)  # decoded once per run, outside the epochs
    timer = PhaseTimer(engine.device)
    epoch = lambda: engine.epoch
    timer.wrap(engine, "_train_shared", "epoch", bucket=epoch)
    timer.wrap(engine, "_learn", "epoch", bucket=epoch)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        engine.run()
    return time.perf_counter() - start, timer.times["epoch"][cfg.pretrain_epochs:]


def timed_derive(run: Path, out: Path, rescore: bool = False, **overrides) -> float:
    from facenar.search.rederive import derive_again

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        derive_again(run, out, overrides=overrides, rescore=rescore)
    return time.perf_counter() - start


def run(quick: bool = False) -> Section:
    settings = _settings(quick)
    rows = []
    section = Section("Search strategies: speed ratios (one run, demo proxy)", COLUMNS, rows)
    # the targets are set on the demo search; a quick search's fixed costs (loading the run, writing the
    # plots) weigh several times more against its few steps, so quick mode reports ratios only
    judge = section.target if not quick else (lambda description, met, detail: None)
    with tempfile.TemporaryDirectory(prefix="facenar-strategies-") as tmp:
        tmp = Path(tmp)
        enas_wall, enas_epochs = timed_search(tmp / "enas", {k: v for k, v in settings.items()
                                                             if k != "evolution_cycles"})
        random = {k: v for k, v in settings.items() if k not in ("controller_steps", "evolution_cycles")}
        _, random_epochs = timed_search(tmp / "random", {**random, "strategy": "random"})
        ratio = median(random_epochs) / median(enas_epochs)
        rows.append({"measure": "random search epoch (after PreTrain)", "seconds": median(random_epochs),
                     "reference": "enas epoch, same shared steps", "reference_s": median(enas_epochs),
                     "ratio": ratio, "target": "<= 0.6"})
        judge("random epoch <= 0.6x enas epoch", ratio <= 0.6, f"{ratio:.2f}x")
        points = json.loads((tmp / "enas" / "pareto.json").read_text())["points"]
        macs = sorted(p["macs"] for p in points)
        budget = (macs[0] + macs[-1]) / 2
        derive_s = timed_derive(tmp / "enas", tmp / "new_budget.json", max_macs=budget)
        ratio = derive_s / enas_wall
        rows.append({"measure": f"derive for a new budget (--max-macs {budget:.3g})", "seconds": derive_s,
                     "reference": "the whole enas search", "reference_s": enas_wall, "ratio": ratio,
                     "target": "<= 0.05"})
        judge("derive <= 5% of the search's wall time", ratio <= 0.05, f"{100 * ratio:.1f}%")
        cold = timed_derive(tmp / "enas", tmp / "new_budget_rescored.json", rescore=True, max_macs=budget)
        rows.append({"measure": "the same, --rescore (every candidate scored again)", "seconds": cold,
                     "reference": "the whole enas search", "reference_s": enas_wall, "ratio": cold / enas_wall,
                     "target": ""})
        same = timed_derive(tmp / "enas", tmp / "enas_again.json", rescore=True)
        samples = settings.get("derive_samples", 20)  # evolution: a first population of that size, no cycles
        evolution = timed_derive(tmp / "enas", tmp / "evolution.json", rescore=True, strategy="evolution",
                                 population=samples, tournament=2, evolution_cycles=0)
        ratio = evolution / same
        rows.append({"measure": f"evolution derivation ({samples} first-population minibatch rewards + "
                                f"{samples} whole-val candidates), --rescore", "seconds": evolution,
                     "reference": f"enas derivation ({samples} samples + greedy), --rescore", "reference_s": same,
                     "ratio": ratio, "target": "<= 1.2"})
        judge("evolution derivation within 1.2x of enas derivation", ratio <= 1.2, f"{ratio:.2f}x")
    section.notes.append("ratios of medians measured in this one run on this machine; the time a run takes "
                         "depends on the load of the machine, the ratios much less")
    if quick:
        section.notes.append(f"quick mode: {settings}; a smoke test that reports ratios only: the targets are "
                             "set on the demo search and judged in full mode (benchmarks/search_strategies.md)")
    section.notes.append(", ".join(f"{k}: {v}" for k, v in machine_info().items()))
    return section


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(argv, "benchmarks.search_strategies", __doc__, lambda quick, device: run(quick),
                          quick_help="2-epoch demo searches, small derivations")


if __name__ == "__main__":
    run_cli(main)
