"""The strategy contract: the seam between the search engine and how architectures are chosen.

The engine owns the supernet, the data and the run folder; a strategy owns what it learns. Per
epoch the engine asks it for the architecture of every shared-weight minibatch (`train_archs`),
then lets it learn from val-split rewards (`learn`, which returns the epoch's search.csv row); at
the end it asks for the candidates that derivation scores on the whole val split (`candidates`).
`state_dict`/`load_state_dict` hold everything that decides its future, so a resumed run is
bit-identical to an uninterrupted one. All methods run on rank 0 only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

Codes = list[int]


@dataclass
class Scoring:
    """Rewards with the current shared weights on val minibatches (drawn from the engine's val generator)."""

    score: Callable[[list[Codes], Any, Any], list[float]]  # (codes list, images, labels) -> rewards
    draw: Callable[[], tuple[Any, Any]]  # -> (images, labels): the next val minibatch

    def minibatch(self, codes_list: list[Codes]) -> list[float]:
        """Score several architectures on one fresh val minibatch (the same batch for all: comparable)."""
        images, labels = self.draw()
        return self.score(codes_list, images, labels)


class Strategy:
    """Base class of every search strategy (see the module docstring for the contract).

    OPTIONS: config keys only this strategy reads (the CLI refuses them with another strategy);
    extra_columns: search.csv columns it adds; curve: (columns, title) of what it learns, plotted.
    """

    name = ""  # its registry name
    OPTIONS: tuple[str, ...] = ()
    extra_columns: tuple[str, ...] = ()
    curve: tuple[tuple[str, ...], str] = (("entropy",), "sampling entropy (nats)")

    def __init__(self, space, cfg, budget, arch_gen: torch.Generator):
        self.space, self.cfg, self.budget, self.arch_gen = space, cfg, budget, arch_gen

    def train_archs(self, epoch: int, steps: int) -> list[Codes]:
        """One architecture per shared-weight minibatch of `epoch` (default: uniform, as in PreTrain)."""
        return self.space.random_codes(steps, self.arch_gen)

    def learn(self, epoch: int, scoring: Scoring) -> dict:
        raise NotImplementedError

    def candidates(self, generator: torch.Generator, scoring: Scoring) -> list[Codes]:
        raise NotImplementedError

    def describe_candidates(self, candidates: list[Codes], rewards: list[float]) -> dict:
        """Provenance fields about the candidates beyond the pick (enas: the greedy architecture)."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def random_within_budget(self, count: int, generator: torch.Generator, rounds: int = 50) -> list[Codes]:
        """`count` uniform architectures within the budget by rejection (fewer when it is very tight);
        without a budget exactly `space.random_codes(count)`."""
        found: list[Codes] = []
        for _ in range(rounds):
            found += [codes for codes in self.space.random_codes(count, generator) if self.budget.fits(codes)]
            if len(found) >= count:
                break
        return found[:count]

    def score_uniform(self, scoring: Scoring, phase: str, policy=None) -> dict:
        """The record row of an epoch that learns nothing: `controller_samples` uniform architectures
        scored on one val minibatch (PreTrain, and every epoch of random search)."""
        codes = self.space.random_codes(self.cfg.controller_samples, self.arch_gen)
        rewards = scoring.minibatch(codes)
        best = max(range(len(codes)), key=rewards.__getitem__)
        return {"phase": phase, "reward_mean": sum(rewards) / len(rewards), "reward_max": rewards[best],
                "best_codes": codes[best], "entropy": self.space.uniform_entropy(),
                **self.space.policy_stats(policy, codes)}
