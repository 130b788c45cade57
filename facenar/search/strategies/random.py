"""`random`: random search with weight sharing (Li & Talwalkar, 2019): uniform architectures throughout.

No controller phase: every epoch is PreTrain-like (uniform minibatches, `controller_samples` uniform
architectures scored once for the record), so an epoch costs the shared-weight steps and little
more; derivation scores `derive_samples` uniform architectures (within the budget, if any).
"""
from __future__ import annotations

import torch

from facenar.search.strategies import STRATEGIES
from facenar.search.strategies.base import Scoring, Strategy


@STRATEGIES.register("random", summary="uniform sampling throughout, no controller (random search + weight sharing)")
class RandomStrategy(Strategy):
    name = "random"

    def learn(self, epoch: int, scoring: Scoring) -> dict:
        return {**self.score_uniform(scoring, "pretrain" if epoch < self.cfg.pretrain_epochs else "random"),
                "baseline": None}

    def candidates(self, generator: torch.Generator, scoring: Scoring) -> list[list[int]]:
        """`derive_samples` uniform architectures (uniform among those within the budget, if any)."""
        return self.random_within_budget(self.cfg.derive_samples, generator)
