"""`evolution`: regularized (aging) evolution (Real et al., 2019) on the shared weights, after PreTrain.

Shared weights keep training on uniform architectures (as single-path one-shot NAS does, Guo et al.,
2020), so every candidate is judged by equally trained weights. After PreTrain, each epoch runs
`evolution_cycles` cycles: sample `tournament` members of the population, mutate the best one in one
slot (one code position to another value), score the child on a fresh val minibatch, add it and
remove the OLDEST member (aging: a member lives `population` cycles however good its reward was,
which also retires rewards measured with older shared weights). Budget-aware: neither the first
population nor a child is ever admitted over the budget. Derivation scores the best distinct
architectures seen (by minibatch reward); for a new budget (`derive`) it first evolves one more
epoch's cycles within it.
"""
from __future__ import annotations

import math

import torch

from facenar.search.strategies import STRATEGIES
from facenar.search.strategies.base import Codes, Scoring, Strategy

SEEN_KEPT = 10  # x derive_samples: the best architectures remembered for derivation (bounds the checkpoint)
MUTATION_TRIES = 20  # one-slot mutations tried per cycle before a child within the budget is given up


@STRATEGIES.register("evolution", summary="regularized evolution (Real et al., 2019) on the shared weights; "
                                          "budget-aware")
class EvolutionStrategy(Strategy):
    name = "evolution"
    OPTIONS = ("population", "tournament", "evolution_cycles")
    extra_columns = ("population_mean", "population_best")
    curve = (("population_mean", "population_best"), "population reward (val minibatches)")

    def __init__(self, space, cfg, budget, arch_gen: torch.Generator):
        super().__init__(space, cfg, budget, arch_gen)
        self.population: list[tuple[Codes, float]] = []  # oldest first
        self.seen: dict[tuple[int, ...], float] = {}  # best minibatch reward of each architecture scored

    def learn(self, epoch: int, scoring: Scoring) -> dict:
        if epoch < self.cfg.pretrain_epochs:
            return {**self.score_uniform(scoring, "pretrain"), "baseline": None, "population_mean": None,
                    "population_best": None}
        children = self.evolve(scoring)
        best = max(range(len(children)), key=lambda i: children[i][1]) if children else None
        rewards = [reward for _, reward in self.population]
        return {"phase": "evolution", "reward_mean": sum(r for _, r in children) / len(children) if children else None,
                "reward_max": children[best][1] if children else None,
                "best_codes": children[best][0] if children else None, "entropy": self.diversity(),
                "baseline": None, "population_mean": sum(rewards) / len(rewards), "population_best": max(rewards),
                **self.space.policy_stats(None, [codes for codes, _ in self.population])}

    def evolve(self, scoring: Scoring) -> list[tuple[Codes, float]]:
        """`evolution_cycles` cycles (after filling the population, within the budget); the children."""
        self._fill(scoring)
        children = []
        for _ in range(self.cfg.evolution_cycles):
            picks = torch.randperm(len(self.population), generator=self.arch_gen)[:self.cfg.tournament].tolist()
            parent = max(picks, key=lambda i: self.population[i][1])  # first best on ties
            child = self._mutate(self.population[parent][0])
            if child is None:
                continue
            reward = self._score(scoring, child)
            self.population.append((child, reward))
            self.population.pop(0)
            children.append((child, reward))
        keep = sorted(self.seen.items(), key=lambda item: -item[1])[:SEEN_KEPT * max(1, self.cfg.derive_samples)]
        self.seen = dict(keep)
        return children

    def _fill(self, scoring: Scoring) -> None:
        """Drop members over the budget (a new budget at `derive`), then top up with uniform in-budget ones."""
        self.population = [(codes, r) for codes, r in self.population if self.budget.fits(codes)]
        missing = self.cfg.population - len(self.population)
        fresh = self.random_within_budget(missing, self.arch_gen) if missing > 0 else []
        if missing > 0 and not fresh and not self.population:
            fresh = [self.budget.cheapest_codes()]  # a very tight budget: start from the cheapest network
        self.population += [(codes, self._score(scoring, codes)) for codes in fresh]

    def _score(self, scoring: Scoring, codes: Codes) -> float:
        reward = scoring.minibatch([codes])[0]
        key = tuple(codes)
        self.seen[key] = max(reward, self.seen.get(key, reward))
        return reward

    def _mutate(self, codes: Codes) -> Codes | None:
        """The parent with one code position changed to another value, within the budget (or None)."""
        choices = self.space.code_choices()
        for _ in range(MUTATION_TRIES):
            pos = int(torch.randint(len(codes), (1,), generator=self.arch_gen))
            value = int(torch.randint(choices[pos] - 1, (1,), generator=self.arch_gen))
            child = list(codes)
            child[pos] = value + (value >= codes[pos])  # any value but the parent's
            if self.budget.fits(child):
                return child
        return None

    def diversity(self) -> float:
        """Entropy (nats) of the population's value distribution, summed over code positions: what it
        still explores (uniform codes give the space's uniform entropy, one architecture 0)."""
        total = 0.0
        for column in zip(*(codes for codes, _ in self.population)):
            for value in set(column):
                p = column.count(value) / len(column)
                total -= p * math.log(p)
        return total

    def candidates(self, generator: torch.Generator, scoring: Scoring) -> list[Codes]:
        """The `derive_samples` best distinct architectures seen within the budget (best first)."""
        if not self.population or not all(self.budget.fits(codes) for codes, _ in self.population):
            self.evolve(scoring)  # no population yet (another strategy's run) or a new budget
        fitting = sorted(((r, list(k)) for k, r in self.seen.items() if self.budget.fits(k)),
                         key=lambda item: -item[0])
        return [codes for _, codes in fitting[:max(1, self.cfg.derive_samples)]]

    def state_dict(self) -> dict:
        return {"population": [[codes, r] for codes, r in self.population],
                "seen": [[list(k), r] for k, r in self.seen.items()]}

    def load_state_dict(self, state: dict) -> None:
        self.population = [(list(codes), r) for codes, r in state["population"]]
        self.seen = {tuple(codes): r for codes, r in state["seen"]}
