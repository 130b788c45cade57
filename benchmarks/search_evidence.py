"""Search evidence: ranking fidelity of the shared weights, and NAR against its baselines at equal budget.

(1) Ranking fidelity: a search with PreTrain and one without (--pretrain-epochs 0), same seed and
budget; K architectures (derived, greedy, all-conv3x3 baseline, random ones spread over the MAC
range) are scored with each search's final shared weights on the whole val split and trained
from scratch on one fixed budget; Kendall tau and Spearman rho between the two rankings, and a
scatter plot. (2) NAR with each search strategy (enas = the paper's controller; random = random search
with weight sharing, Li & Talwalkar; evolution = regularized evolution, Real et al.) and ENAS with
searchable skips, at equal shared-weight training images; each pick trained from scratch with the same
budget, over several search seeds; at each strategy's mean pick MACs, the two networks a practitioner
builds by hand instead (the baseline width-scaled, the next shallower backbone width-scaled), trained
with the same budget over as many training seeds; the stand-alone Pareto front of all of them. (3) The paper's Fig. 1 on the CIFAR-10 task: two ENAS
searches, skip penalty on and off, same seed and budget; per epoch skip probability and KL(p_skip || 0.5),
table and plot. Every (task, space) pair the engine does not know yet is reported as "not run" with what
it needs.

    python -m benchmarks.search_evidence [--quick] [--jobs N] [--out FILE] [--data DIR --task face|cifar10 --preset P]
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from dataclasses import fields
from pathlib import Path
from typing import Sequence

import torch

from benchmarks.common import Section, is_earlier_report, machine_info, markdown_table
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from benchmarks.evidence_tools import (Budget, arch_cost, handmade_alternatives, rank_agreement, run_search,
                                       search_config, shared_images, spread_indices, train_from_scratch)
from facenar_runtime.atomic import atomic_path, write_text_atomic
from facenar_runtime import limits
from facenar_runtime.cli import number, run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import check_outputs
from facenar.dist import device_option

TASKS = ("face", "cifar10")  # each gets both parts; a task the engine lacks is a "not run" row
# (label, space, strategy); the first also runs the ranking-fidelity part (its seed-0 search is that part's)
METHODS = (("NAR + enas (controller)", "nar", "enas"), ("NAR + random (weight sharing)", "nar", "random"),
           ("NAR + evolution", "nar", "evolution"), ("ENAS, searchable skips", "enas", "enas"))
TITLE = "Search evidence: ranking fidelity (shared-weight vs stand-alone) and NAR against its baselines"
PLOT_NAME = "search_evidence_fidelity.png"
DEFAULT_PLOT = Path(__file__).resolve().parent / PLOT_NAME
FIG1_NAME = "search_evidence_fig1.png"  # next to the scatter plot
PARETO_NAME = "search_evidence_pareto.png"  # likewise
FIG1_TASK = "cifar10"  # the paper's Fig. 1 setting: ENAS's macro space on CIFAR-10
FIG1_COLUMNS = ["task", "epoch", "phase", "skip_prob (penalty on)", "KL (penalty on)", "skip_prob (penalty off)",
                "KL (penalty off)"]
FULL_REPORTS = "benchmarks/evidence/face/search_evidence.md, benchmarks/evidence/cifar10/search_evidence.md"
POOL_SEED = 1234  # the random architectures (same for both searches of part 1)
SETTINGS = {
    # a few minutes on 2 idle cores: tiny searches and budgets, a smoke test of the method, not evidence
    True: dict(search=dict(epochs=2, pretrain_epochs=1, steps_per_epoch=8, controller_steps=3, derive_samples=2,
                           random_samples=0, population=4, tournament=2, evolution_cycles=6),
               spaces=dict(enas=dict(layers=4, channels=16)), k=6, pool=64, seeds=(0,),
               # Fig. 1: 3 search epochs, enough for the free skips to drift (~35 s a search); no reuse here
               fig1=dict(epochs=4, controller_steps=6),
               budget=dict(face=Budget(steps=16, batch_size=32), cifar10=Budget(steps=16, batch_size=32))),
    # the demo preset's search; what the docs quote. Stand-alone budgets per task, measured (1 thread): face
    # 200 x 64 images ~1 min, top-1 well off both chance (1/200) and its ceiling; demo CIFAR saturates at 300 steps
    # (98.6% top-1, no ranking left to compare), so it gets fewer
    # ENAS keeps its 12 layers at 16 channels: ENAS's own 36 cost ~5x the MACs (50 vs 11 M, mean of random
    # architectures at input 32; the demo NAR networks: 2-14 M) and 93 s per face PreTrain epoch against NAR's 22 s
    False: dict(search=dict(random_samples=0), spaces=dict(enas=dict(layers=12, channels=16)), fig1={}, k=10, pool=256,
                seeds=(0, 1, 2),
                budget=dict(face=Budget(steps=200, batch_size=64), cifar10=Budget(steps=100, batch_size=64))),
}
FIDELITY_COLUMNS = ["task", "search", "K", "kendall_tau", "kendall_p", "spearman_rho", "spearman_p",
                    "derived_shared", "derived_standalone", "search_s"]
ARCH_COLUMNS = ["task", "search", "arch", "codes", "MMACs", "shared_reward", "standalone_top1"]
METHOD_COLUMNS = ["task", "method", "seeds", "standalone_top1", "spread", "params_M", "MMACs",
                  "shared_train_images"]


class EvidenceSection(Section):
    """A Section with further titled tables after the main one (the framework's Section has one)."""

    def __init__(self, title, columns, rows, tables):
        super().__init__(title, columns, rows)
        self.tables = tables  # [(subtitle, columns, rows)]

    def markdown(self) -> str:
        head, _, tail = super().markdown().partition("\n- ")
        extra = [f"**{name}**\n\n{markdown_table(rows, columns)}\n" for name, columns, rows in self.tables]
        return head.rstrip() + "\n\n" + "\n".join(extra) + ("\n- " + tail if tail else "")


def shown(path: Path) -> str:
    """A plot's path as the report names it: relative to the working directory when inside it (a committed
    report must not name the machine's folders)."""
    path = Path(path).resolve()
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def progress(message: str) -> None:
    """One line per finished search or training on stderr: the full mode runs for an hour or more."""
    print(f"search_evidence: {message}", file=sys.stderr, flush=True)


def missing(task: str, space: str) -> str | None:
    """Why the engine cannot run this (task, space) yet, or None."""
    from facenar.search.config import SearchConfig
    from facenar.tasks import TASKS as KNOWN

    if task not in KNOWN:
        return f"needs --task {task}"
    if space != "nar" and "space" not in {f.name for f in fields(SearchConfig)}:
        return f"needs --space {space}"
    return None


class Evidence:
    """Runs (and caches) the searches and stand-alone trainings both parts share."""

    def __init__(self, settings: dict, folder: Path, data: str | None, preset: str, device: str):
        self.s, self.folder, self.data, self.preset, self.device = settings, folder, data, preset, device
        self.searches: dict[tuple, object] = {}
        self.trained: dict[tuple, dict] = {}
        self.images = {"search": 0, "search_s": 0.0, "train": 0, "train_s": 0.0}

    def search(self, task: str, space: str, seed: int, **overrides):
        from facenar.search.strategies import STRATEGIES

        space_options = self.s["spaces"].get(space, {})  # e.g. ENAS's layers/channels
        strategy = overrides.get("strategy", "enas")
        foreign = {key for name in STRATEGIES if name != strategy for key in STRATEGIES.get(name).OPTIONS}
        settings = {k: v for k, v in {**self.s["search"], **space_options}.items() if k not in foreign}
        cfg = search_config(task, space, seed, self.data, self.preset, {**settings, **overrides})
        key = json.dumps(cfg.to_dict(), sort_keys=True)  # equal settings = one search, however they were spelled
        if key not in self.searches:
            name = f"search{len(self.searches)}-{task}-{space}"  # short: Fig. 1's legend shows it
            engine = run_search(cfg, self.folder / name, self.device)
            self.images["search"] += shared_images(engine)
            self.images["search_s"] += engine.seconds
            self.searches[key] = engine
            progress(f"{name} (seed {seed}{''.join(f', {k} {v}' for k, v in overrides.items())}): "
                     f"{engine.seconds:.0f} s")
        return self.searches[key]

    def standalone(self, engine, arch, seed: int | None = None) -> float:
        """Stand-alone top-1 after the task's fixed budget; `seed` replaces the budget's training seed."""
        network = {k: v for k, v in arch.to_dict().items() if k != "provenance"}  # what is trained, not its history
        budget = self.s["budget"][engine.cfg.task]
        budget = budget if seed is None else replace(budget, seed=seed)
        key = (engine.cfg.task, engine.cfg.data, repr(network), budget.seed)
        if key not in self.trained:
            self.trained[key] = train_from_scratch(arch, engine.cfg, engine.data, budget, self.device)
            self.images["train"] += budget.steps * budget.batch_size
            self.images["train_s"] += self.trained[key]["seconds"]
            progress(f"stand-alone {len(self.trained)} ({engine.cfg.task}, {budget.steps} steps, seed {budget.seed}): "
                     f"top-1 {self.trained[key]['top1']:.4f}, {self.trained[key]['seconds']:.0f} s")
        return self.trained[key]["top1"]

    # ----- part 1
    def fidelity(self, task: str) -> tuple[list[dict], list[dict], dict]:
        from facenar.search.config import search_space
        from facenar.search.costs import macs_model

        seed = self.s["seeds"][0]
        searches = {"with PreTrain": self.search(task, "nar", seed),
                    "no PreTrain": self.search(task, "nar", seed, pretrain_epochs=0)}
        space = search_space(searches["with PreTrain"].cfg)  # the NAR Arch template (codes all 0)
        macs = macs_model(space)
        baseline = [space.candidates.index("conv3x3")] * space.num_slots  # the hand-made all-3x3 network
        gen = torch.Generator().manual_seed(POOL_SEED)
        pool = torch.randint(0, len(space.candidates), (self.s["pool"], space.num_slots), generator=gen).tolist()
        randoms = [pool[i] for i in spread_indices([macs(tuple(c)) for c in pool], self.s["k"] - 3)]
        summary, per_arch, points = [], [], {}
        for label, engine in searches.items():
            named = [("derived", engine.derived.codes), ("greedy", engine.derived.provenance["greedy_codes"]),
                     ("baseline", baseline)] + [(f"random {i + 1}", c) for i, c in enumerate(randoms)]
            seen, scored = set(), []
            for name, codes in named:
                if tuple(codes) in seen:  # e.g. greedy == derived: one point each
                    continue
                seen.add(tuple(codes))
                shared = engine.rewards.full(codes)
                alone = self.standalone(engine, space.with_codes(codes))
                scored.append((shared, alone))
                per_arch.append({"task": task, "search": label, "arch": name, "codes": "".join(map(str, codes)),
                                 "MMACs": round(macs(tuple(codes)) / 1e6, 2), "shared_reward": round(shared, 4),
                                 "standalone_top1": round(alone, 4)})
            stats = rank_agreement([s for s, _ in scored], [a for _, a in scored])
            points[f"{task}: {label} (tau {stats['kendall_tau']:.2f})"] = scored
            summary.append({"task": task, "search": label, "K": stats["n"],
                            **{k: round(v, 3) for k, v in stats.items() if k != "n"},
                            "derived_shared": round(scored[0][0], 4), "derived_standalone": round(scored[0][1], 4),
                            "search_s": round(engine.seconds)})
        return summary, per_arch, points

    # ----- Fig. 1
    def fig1(self, task: str, png: Path) -> list[dict]:
        """The two ENAS searches of the paper's Fig. 1 (skip penalty on = the default 0.8, and off), same
        seed and budget; the penalty-on one is the NAR-vs-baselines ENAS search when the settings match."""
        from facenar.search.fig1 import plot_fig1

        seed = self.s["seeds"][0]
        runs = [self.search(task, "enas", seed, **self.s["fig1"]),
                self.search(task, "enas", seed, **self.s["fig1"], skip_weight=0.0)]
        rows = plot_fig1([engine.run_dir.path for engine in runs], png, self.folder / "fig1.csv")
        return fig1_table(rows, task, runs[0].cfg.pretrain_epochs)

    # ----- part 2
    def chosen(self, task: str, space: str, strategy: str, seed: int):
        """(engine, architecture) a method picks: its search's derived network (the random strategy's is
        the best of `derive_samples` uniform samples by shared-weight reward on the whole val split)."""
        engine = self.search(task, space, seed, **({} if strategy == "enas" else {"strategy": strategy}))
        return engine, engine.derived

    def method_rows(self, task: str, method: str, space: str, strategy: str) -> list[dict]:
        """The method's row (one search per seed, each pick trained with the fixed budget) and, for a NAR
        strategy, the rows of the two hand-made alternatives at its mean pick MACs."""
        picks = [self.chosen(task, space, strategy, seed) for seed in self.s["seeds"]]
        accs = [self.standalone(engine, arch) for engine, arch in picks]
        row = summary_row(task, method, accs, [arch_cost(arch) for _, arch in picks], shared_images(picks[0][0]))
        if space != "nar":
            return [row]
        engine, template = picks[0]
        rows = [row]
        for name, arch in handmade_alternatives(template, row["MMACs"] * 1e6):
            accs = [self.standalone(engine, arch, seed) for seed in self.s["seeds"]]
            rows.append(summary_row(task, f"{name} (hand-made, at the {strategy} pick's MACs)", accs,
                                    [arch_cost(arch)] * len(accs), 0))
        return rows

    def unit(self, task: str, index: int, fig1_png: Path) -> dict:
        """One method of one task (the first method also runs the ranking-fidelity part, Fig. 1 rides with
        the ENAS method on its task): the independent piece --jobs runs in parallel."""
        method, space, strategy = METHODS[index]
        out = {"fidelity": [], "per_arch": [], "points": {}, "fig1": []}
        if index == 0:
            reason = missing(task, "nar")
            if reason:
                out["fidelity"] = [{"task": task, "search": f"not run: {reason}"}]
            else:
                out["fidelity"], out["per_arch"], out["points"] = self.fidelity(task)
        reason = missing(task, space)
        out["methods"] = ([{"task": task, "method": method, "seeds": f"not run: {reason}"}] if reason
                          else self.method_rows(task, method, space, strategy))
        if space == "enas" and task == FIG1_TASK and not reason:
            out["fig1"] = self.fig1(task, fig1_png)
        out["images"] = dict(self.images)
        out["classes"] = {e.cfg.task: e.data.num_classes for e in self.searches.values()}
        return out


def full_mode_estimate(images: dict, full: dict, tasks: Sequence[str]) -> float:
    """Seconds the full mode would take here (one job) for these tasks, from this run's seconds per search /
    training image (every search at its task's demo-preset size: rough)."""
    from facenar.config import preset_key
    from facenar.search.config import PRESETS

    search_rate = images["search_s"] / max(images["search"], 1)
    train_rate = images["train_s"] / max(images["train"], 1)
    seeds = len(full["seeds"])
    total = 0.0
    for task in tasks:
        demo = {**PRESETS["demo"], **PRESETS[preset_key(task, "demo")], **full["search"], **full["fig1"]}
        nar = sum(space == "nar" for _, space, _ in METHODS)
        searches = 1 + len(METHODS) * seeds + (task == FIG1_TASK)  # + no-PreTrain and Fig. 1's penalty-off
        trains = 2 * full["k"] + len(METHODS) * seeds + 2 * nar * seeds  # + two hand-made per NAR strategy
        total += (searches * demo["epochs"] * demo["steps_per_epoch"] * demo["batch_size"] * search_rate
                  + trains * full["budget"][task].steps * full["budget"][task].batch_size * train_rate)
    return total


def summary_row(task: str, method: str, accs: list[float], costs: list[tuple[int, int]], images: int) -> dict:
    """One row of the against-its-baselines table: mean stand-alone top-1 over the seeds and its spread
    ("sd" also goes to reading() and the Pareto analysis, not to the table)."""
    sd = statistics.stdev(accs) if len(accs) > 1 else None
    return {"task": task, "method": method, "seeds": len(accs), "standalone_top1": round(statistics.mean(accs), 4),
            "spread": "1 seed" if sd is None else f"sd {sd:.4f}, {min(accs):.4f}-{max(accs):.4f}", "sd": sd,
            "params_M": round(statistics.mean(c[0] for c in costs) / 1e6, 3),
            "MMACs": round(statistics.mean(c[1] for c in costs) / 1e6, 2), "shared_train_images": images}


def is_handmade(row: dict) -> bool:
    return "(hand-made" in row["method"]


def pareto_points(methods: list[dict], per_arch: list[dict], task: str) -> list[dict]:
    """Every network of the task trained stand-alone here, once: the methods' picks and the hand-made
    alternatives (means over seeds) and the ranking-fidelity architectures (training seed 0), each marked
    with whether it lies on the stand-alone front (higher top-1 at no more MACs)."""
    from facenar.search.pareto import front

    points, named = [], {}
    for row in methods:
        if row["task"] != task or "standalone_top1" not in row:
            continue
        if is_handmade(row):  # one network may be the alternative of several picks: one point
            name, _, pick = row["method"].partition(" (hand-made, at the ")
            if name in named:
                named[name]["label"] += f", {pick.split()[0]}"
                continue
            label, kind = f"{name} (hand-made, at the picks' MACs of: {pick.split()[0]}", "hand-made"
        else:
            name, label, kind = row["method"], row["method"], "pick"
        named[name] = {"label": label, "kind": kind, "accuracy": row["standalone_top1"], "MMACs": row["MMACs"],
                       "sd": row["sd"]}
        points.append(named[name])
    for point in points:
        point["label"] += ")" if point["kind"] == "hand-made" else ""
    seen = set()
    for row in per_arch:
        if row["task"] == task and row["codes"] not in seen:
            seen.add(row["codes"])
            points.append({"label": f"{row['arch']} ({row['codes']})", "kind": "architecture",
                           "accuracy": row["standalone_top1"], "MMACs": row["MMACs"], "sd": None})
    kept = set(front(points, "MMACs"))
    return [{**point, "front": i in kept} for i, point in enumerate(points)]


def pareto_reading(methods: list[dict], per_arch: list[dict]) -> str:
    """Per task: which picks lie on the stand-alone Pareto front, and each NAR strategy's pick against the
    two hand-made networks at its MACs, with whether the difference exceeds the larger seed sd."""
    lines = []
    for task in dict.fromkeys(row["task"] for row in methods if "standalone_top1" in row):
        points = pareto_points(methods, per_arch, task)
        picks = [p for p in points if p["kind"] == "pick"]
        parts = [f"{task}: on the stand-alone Pareto front (top-1 vs MACs over {len(points)} networks trained here): "
                 + ", ".join(f"{p['label']} {'yes' if p['front'] else 'no'}" for p in picks)]
        rows = [row for row in methods if row["task"] == task and "standalone_top1" in row]
        for pick, handmade in ((row, [r for r in rows[i + 1:i + 3] if is_handmade(r)]) for i, row in enumerate(rows)
                               if not is_handmade(row)):
            for other in handmade:
                gap = pick["standalone_top1"] - other["standalone_top1"]
                sds = [sd for sd in (pick["sd"], other["sd"]) if sd is not None]
                verdict = (f"{'more than' if abs(gap) > max(sds) else 'within'} one seed sd ({max(sds):.3f})" if sds
                           else "one seed: no spread")
                parts.append(f"{pick['method']} {'leads' if gap >= 0 else 'trails'} {other['method'].split(' (')[0]} "
                             f"by {abs(gap):.3f}, {verdict}")
        lines.append("; ".join(parts))
    return ". ".join(lines) if lines else "no method ran"


def reading(fidelity: list[dict], methods: list[dict], per_arch: list[dict], classes: dict[str, int]) -> str:
    """The plain reading of these tables, computed from them so it stays true when the numbers change:
    how far stand-alone accuracy sits from chance, whether each rank agreement is significant, and
    whether the best search method's lead exceeds the seed spread."""
    lines = []
    for task in dict.fromkeys(row["task"] for row in per_arch):
        tops = [row["standalone_top1"] for row in per_arch if row["task"] == task]
        line = f"{task}: stand-alone top-1 {min(tops):.3f}-{max(tops):.3f} (chance {1 / classes[task]:.3f})"
        for row in fidelity:
            if row["task"] == task and "kendall_p" in row:
                verdict = "significant" if row["kendall_p"] < 0.05 else "not told apart from no agreement"
                line += f"; {row['search']}: tau {row['kendall_tau']:.2f} (p {row['kendall_p']:.2f}, {verdict})"
        ranked = sorted((row for row in methods if row["task"] == task and "standalone_top1" in row
                         and not is_handmade(row)), key=lambda row: -row["standalone_top1"])
        if len(ranked) > 1:
            best, second = ranked[:2]
            if best["sd"] is None or second["sd"] is None:
                line += "; one seed: no spread to compare the methods against"
            else:
                gap, noise = best["standalone_top1"] - second["standalone_top1"], max(best["sd"], second["sd"])
                line += (f"; best search method {best['method']} leads {second['method']} by {gap:.3f}, "
                         f"{'more than' if gap > noise else 'within'} one seed sd ({noise:.3f})")
        lines.append(line)
    return "; ".join(lines) if lines else "no task ran"


def pareto_plot(methods: list[dict], per_arch: list[dict], tasks: Sequence[str], path: Path) -> None:
    """Stand-alone top-1 against MACs, one panel per task: picks and hand-made networks with their seed sd,
    the ranking-fidelity architectures in grey, the front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tasks), 1, figsize=(10, 4.6 * len(tasks)), squeeze=False)
    styles = {"pick": dict(marker="o", ms=8), "hand-made": dict(marker="s", ms=7, mfc="none"),
              "architecture": dict(marker=".", ms=6, color="0.6")}
    for ax, task in zip(axes[:, 0], tasks):
        points = pareto_points(methods, per_arch, task)
        grey = "other networks trained here (the ranking-fidelity table: baseline, random, derived)"
        for point in points:
            label = grey if point["kind"] == "architecture" else point["label"]
            grey = None if point["kind"] == "architecture" else grey  # one legend entry for all of them
            ax.errorbar(point["MMACs"], point["accuracy"], yerr=point["sd"] or 0, linestyle="none", capsize=3,
                        label=label, **styles[point["kind"]])
        edge = sorted((p for p in points if p["front"]), key=lambda p: p["MMACs"])
        ax.step([p["MMACs"] for p in edge], [p["accuracy"] for p in edge], where="post", color="k", lw=0.8,
                alpha=0.6, label="stand-alone Pareto front")
        ax.set_xlabel("multiply-adds (M)")
        ax.set_ylabel("stand-alone top-1 (fixed budget)")
        ax.set_title(f"{task}: stand-alone top-1 (mean, seed sd) against multiply-adds", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def fig1_table(rows: list[dict], task: str, pretrain_epochs: int) -> list[dict]:
    """One line per epoch with both runs side by side (plot_fig1's rows: run, skip_weight, epoch, ...)."""
    by_epoch: dict[int, dict] = {}
    for row in rows:
        side = "off" if row["skip_weight"] == 0 else "on"
        line = by_epoch.setdefault(row["epoch"], {"task": task, "epoch": row["epoch"],
                                                  "phase": "PreTrain" if row["epoch"] <= pretrain_epochs else "search"})
        line[f"skip_prob (penalty {side})"] = round(row["skip_prob"], 4)
        line[f"KL (penalty {side})"] = round(row["skip_kl_half"], 4)
    return [by_epoch[epoch] for epoch in sorted(by_epoch)]


def scatter(points: dict[str, list[tuple[float, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, pairs in points.items():
        ax.scatter([p[0] for p in pairs], [p[1] for p in pairs], label=label, alpha=0.8)
    ax.set_xlabel("shared-weight reward (whole val split)")
    ax.set_ylabel("stand-alone top-1 (fixed budget, same val split)")
    ax.set_title("Ranking fidelity")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def run_unit(settings: dict, task: str, index: int, data: str | None, preset: str, device: str, fig1_png: Path,
             threads: int) -> dict:
    """One unit (Evidence.unit) in a worker process of --jobs: its own run folders and thread count."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="facenar-evidence-") as tmp:
        return Evidence(settings, Path(tmp), data, preset, device).unit(task, index, fig1_png)


def worker_threads(jobs: int) -> int:
    """This machine's cores split between the --jobs workers (at least one thread each)."""
    return max(1, len(os.sched_getaffinity(0)) // jobs)


def run_units(s: dict, tasks: Sequence[str], data: str | None, preset: str, device: str, fig1_png: Path,
              jobs: int) -> list[dict]:
    """Every (task, method) unit, in report order. One job: in this process, sharing searches and trainings
    between units; more: that many worker processes splitting this machine's cores (the numbers are the
    same, each unit is seeded on its own; only the wall time changes)."""
    units = [(task, index) for task in tasks for index in range(len(METHODS))]
    if jobs == 1:
        with tempfile.TemporaryDirectory(prefix="facenar-evidence-") as tmp:
            evidence = Evidence(s, Path(tmp), data, preset, device)
            results = []
            for task, index in units:
                before = dict(evidence.images)
                result = evidence.unit(task, index, fig1_png)
                result["images"] = {k: v - before[k] for k, v in result["images"].items()}  # this unit's share
                results.append(result)
            return results
    threads = worker_threads(jobs)
    heavy_first = sorted(units, key=lambda unit: unit[1] not in (0, len(METHODS) - 1))  # fidelity, ENAS: longest
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {unit: pool.submit(run_unit, s, *unit, data, preset, device, fig1_png, threads)
                   for unit in heavy_first}
        return [futures[unit].result() for unit in units]


def run(quick: bool = False, device: str = "cpu", plot: str | Path = DEFAULT_PLOT, data: str | None = None,
        tasks: Sequence[str] = TASKS, preset: str = "demo", jobs: int = 1) -> Section:
    s = SETTINGS[quick]
    start = time.perf_counter()
    fidelity, per_arch, methods, points, notes, fig1, classes = [], [], [], {}, [], [], {}
    images = {"search": 0, "search_s": 0.0, "train": 0, "train_s": 0.0}
    fig1_png = Path(plot).with_name(FIG1_NAME)
    pareto_png = Path(plot).with_name(PARETO_NAME)
    for result in run_units(s, tasks, data, preset, device, fig1_png, jobs):
        fidelity += result["fidelity"]
        per_arch += result["per_arch"]
        points.update(result["points"])
        methods += result["methods"]
        fig1 += result["fig1"]
        classes.update(result["classes"])
        images = {k: v + result["images"][k] for k, v in images.items()}
    fig1_reason = missing(FIG1_TASK, "enas") or (None if FIG1_TASK in tasks else f"needs --task {FIG1_TASK}")
    if points:
        scatter(points, Path(plot))
    ran = [task for task in tasks if any(row["task"] == task and "standalone_top1" in row for row in methods)]
    if ran:
        pareto_plot(methods, per_arch, ran, pareto_png)
    budgets = "; ".join(f"{task} {b.steps} SGD steps of {b.batch_size} images" for task, b in s["budget"].items()
                        if task in tasks)
    b = next(iter(s["budget"].values()))  # lr and seed are the same for every task
    section = EvidenceSection(TITLE + (" [quick]" if quick else ""), FIDELITY_COLUMNS, fidelity,
                              [("NAR against its baselines (stand-alone top-1 after the same budget)", METHOD_COLUMNS,
                                methods),
                               ("the paper's Fig. 1: ENAS's skips with the skip penalty on (weight 0.8, target 0.4) and "
                                "off, same seed and budget; KL = KL(p_skip || 0.5), mean over the epoch's sampled "
                                "architectures", FIG1_COLUMNS,
                                fig1 or [{"task": FIG1_TASK, "epoch": f"not run: {fig1_reason}"}]),
                               ("every architecture of the ranking-fidelity table", ARCH_COLUMNS, per_arch)])
    notes.append(f"settings: searches = {preset} preset with {s['search']}, seeds {list(s['seeds'])}; K = {s['k']} "
                 f"(derived, greedy, baseline, {s['k'] - 3} random spread over the MAC range of {s['pool']} uniform "
                 f"samples; duplicates counted once); stand-alone budget: {budgets} "
                 f"(Nesterov, lr {b.lr} cosine, seed {b.seed}, the task's search head + loss), then top-1 "
                 f"on the whole val split. Each strategy's pick is trained with that seed; the hand-made networks "
                 f"(all conv3x3, uniformly width-scaled to the MAC count nearest the strategy's mean pick MACs, "
                 f"channels in multiples of 8; the search's backbone and the next shallower one of its family) "
                 f"with training seeds {list(s['seeds'])}, so their spread is the training seed's, the picks' the "
                 f"search seed's; MMACs and params_M of the networks without the task's head")
    if points:
        notes.append(f"scatter plot: {shown(plot)}")
    if ran:
        notes.append("Pareto plot (stand-alone top-1 against MACs, every network trained here): "
                     + shown(pareto_png))
    if fig1:
        notes.append(f"Fig. 1 plot: {shown(fig1_png)} (left: KL(p_skip || 0.5), right: mean skip probability). Its two "
                     f"searches: ENAS on {FIG1_TASK}, {preset} preset with {s['search'] | s['spaces']['enas'] | s['fig1']}"
                     + ("" if s["fig1"] else " (the NAR-vs-baselines ENAS search is the penalty-on run)")
                     + f", seed {s['seeds'][0]}, --skip-weight 0.8 vs 0. KL(Bern(p) || Bern(0.5)) lies in [0, ln 2]; "
                     "with the controller's 1.5 tanh cap p stays in [0.18, 0.82], so at most ~0.21. It shows the "
                     "mechanism of the paper's Fig. 1 (free skip probabilities drift away from 0.5, the penalty holds "
                     "them near its target), not that dense skips give worse networks")
    notes.append("what this shows: " + reading(fidelity, methods, per_arch, classes) + ". "
                 + pareto_reading(methods, per_arch) + ". What it does NOT show: "
                 "these are small networks on synthetic demo data (random faces, drawn shapes) with short budgets and "
                 "at most a few seeds, so they say nothing about NAR on real faces or CIFAR-10. "
                 "Run the same tables on a real proxy split with `python -m benchmarks.search_evidence --data "
                 "PROXY_DIR --task face --out evidence.md` and `--task cifar10 --data CIFAR_DIR` (cifar-10-batches-py "
                 "or its tarball); add `--preset paper` for the paper's network (GPU-sized)")
    if quick:
        notes.append(f"quick mode: a smoke test of the method, not evidence. Full mode (demo-preset searches, "
                     f"K = {SETTINGS[False]['k']}, {len(SETTINGS[False]['seeds'])} seeds) estimated from this run's "
                     f"seconds per image at {full_mode_estimate(images, SETTINGS[False], tasks) / 60:.0f} min for "
                     f"{', '.join(tasks)} on this machine with one job (rough: search overheads scale differently). The full "
                     f"mode's reports, quoted in docs/guides/search-evidence.md: {FULL_REPORTS}")
    info = machine_info()
    if jobs > 1:  # the workers' threads, not this process's
        info["torch threads"] = f"{worker_threads(jobs)} in each of {jobs} worker processes (--jobs {jobs})"
    notes.append(f"this run: {time.perf_counter() - start:.0f} s; " + ", ".join(f"{k}: {v}" for k, v in info.items()))
    section.notes.extend(notes)
    return section


def _earlier_report(out: Path | None) -> bool:
    """An earlier output of this command (and its plot) may be replaced without --force."""
    return out is not None and is_earlier_report(out, f"## {TITLE}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.search_evidence", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny searches and budgets, 1 seed (CI smoke test)")
    parser.add_argument("--out", help="write the markdown section here (default: print it); the scatter plot "
                                      f"goes next to it as {PLOT_NAME} (replaced on every run)")
    parser.add_argument("--data", help="a real proxy split (face) or dataset folder (other tasks); default: demo data")
    parser.add_argument("--task", choices=TASKS, help="only this task (default: every task)")
    parser.add_argument("--preset", default="demo", choices=["demo", "paper"], help="search preset (default demo)")
    parser.add_argument("--device", default="cpu", type=device_option, choices=["cpu", "cuda"])
    parser.add_argument("--jobs", type=number(int, min=1, max=limits.WORKERS), default=1,
                        help="run the (task, method) units in this many processes, splitting the cores between them "
                             "(default 1: one process, searches shared between units; same numbers either way)")
    parser.add_argument("--force", action="store_true", help="overwrite --out even if it is not an earlier report")
    args = parser.parse_args(argv)
    if args.data and not args.task:
        raise UserError("--data needs --task (which task's data it is)")
    out = Path(args.out) if args.out else None
    plot = out.with_name(PLOT_NAME) if out else DEFAULT_PLOT
    check_outputs(args.force or _earlier_report(out), files={"--out": out}, inputs={"--data": args.data})
    # this command's own file names: always regenerated
    check_outputs(True, files={"plot": plot, "Fig. 1 plot": plot.with_name(FIG1_NAME),
                               "Pareto plot": plot.with_name(PARETO_NAME)}, inputs={"--data": args.data})
    section = run(args.quick, args.device, plot, args.data, [args.task] if args.task else TASKS, args.preset,
                  args.jobs)
    if out:
        write_text_atomic(out, section.markdown())
        print(f"wrote {out} (its plots lie next to it; the notes name them)")
    else:
        print(section.markdown())
    return 0


if __name__ == "__main__":
    run_cli(main)
