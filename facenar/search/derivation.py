"""Derivation: from trained shared weights to the architecture a user gets.

The strategy proposes candidates; each is scored on the whole val split (engine.score_candidates, the
one place that scores a list); the best candidate WITHIN THE BUDGET becomes arch.json, and every scored
architecture (the candidates, `random_samples` uniform ones and the hand-made baseline) goes into the
Pareto front. Used at the end of a search and by `python -m facenar.search derive` for a new budget.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from facenar_runtime.errors import UserError
from facenar.search.pareto import mark_fronts, write_pareto
from facenar.search.record import format_final_table


@dataclass
class Derived:
    arch: object  # Arch or MacroArch, with its provenance
    table: str  # the final table printed for people
    closeness: str  # how close the pick is to each limit (or its costs)


def pareto_paths(arch_path: Path) -> tuple[Path, Path]:
    """arch.json -> pareto.json/.png beside it; another name X.json -> X.pareto.json/.png."""
    stem = "pareto" if arch_path.name == "arch.json" else f"{arch_path.stem}.pareto"
    return arch_path.with_name(stem + ".json"), arch_path.with_name(stem + ".png")


def derive(engine, arch_path: Path, strategy=None, budget=None, provenance: dict | None = None) -> Derived:
    """Score, pick within the budget, write arch + pareto files (atomic); nothing written on an error."""
    cfg, rewards = engine.cfg, engine.rewards
    strategy, budget = strategy or engine.strategy, budget or engine.budget
    stamp = rewards.stamp()  # before scoring (which leaves the weights as they are)
    gen = torch.Generator().manual_seed(cfg.seed + 3)
    candidates = strategy.candidates(gen, engine.scoring)
    accuracy = engine.score_candidates(candidates)
    reward = [rewards.shape(a, codes) for a, codes in zip(accuracy, candidates)]
    fitting = [i for i, codes in enumerate(candidates) if budget.fits(codes)]
    if not fitting:
        cheapest = min(candidates, key=lambda codes: budget.costs(codes)["macs"])
        raise UserError(f"none of the {len(candidates)} candidates of --strategy {strategy.name} is within the budget "
                        f"(the cheapest: {budget.describe(cheapest)}); derive again with --strategy evolution, "
                        "which searches within the budget: python -m facenar.search derive RUN_DIR ...")
    best = max(fitting, key=reward.__getitem__)  # first best on ties
    random_codes = engine.space.random_codes(cfg.random_samples, gen)
    random_accuracy = engine.score_candidates(random_codes)
    random_reward = [rewards.shape(a, codes) for a, codes in zip(random_accuracy, random_codes)]
    baseline = engine.space.baseline_codes()
    baseline_accuracy = engine.score_candidates([baseline])[0] if baseline else None
    summary = {"reward": reward[best], "accuracy": accuracy[best], **strategy.describe_candidates(candidates, reward),
               "random_count": len(random_reward),
               "random_mean_reward": sum(random_reward) / len(random_reward) if random_reward else None,
               "baseline_reward": rewards.shape(baseline_accuracy, baseline) if baseline else None}
    points = _points(budget, [(strategy.name, candidates, accuracy, reward),
                              ("random", random_codes, random_accuracy, random_reward),
                              ("baseline", [baseline] if baseline else [], [baseline_accuracy],
                               [summary["baseline_reward"]])])
    pick = next(i for i, p in enumerate(points) if p["codes"] == candidates[best])
    codes = candidates[best]
    arch, table = engine.space.make_arch(codes, {**summary, "strategy": strategy.name, "budget": budget.limits,
                                                 **(provenance or {})})
    json_path, png_path = pareto_paths(arch_path)
    write_pareto(json_path, png_path, points, pick, budget.limits, stamp)
    arch.save(arch_path)
    on_front = points[pick]["front"]
    where = f"on the shared-weight Pareto front of {', '.join(on_front)}" if on_front else "on no Pareto front"
    closeness = f"{budget.describe(codes)}; {where} ({len(points)} architectures scored)"
    return Derived(arch, format_final_table(table, summary), closeness)


def _points(budget, groups) -> list[dict]:
    """One point per distinct architecture (the first group that scored it names its source)."""
    points, seen = [], set()
    for source, codes_list, accuracy, reward in groups:
        for codes, acc, rew in zip(codes_list, accuracy, reward):
            if tuple(codes) not in seen:
                seen.add(tuple(codes))
                points.append({"source": source, "codes": list(codes), "accuracy": acc, "reward": rew,
                               **budget.costs(codes), "within_budget": budget.fits(codes)})
    return mark_fronts(points)
