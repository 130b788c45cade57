"""`enas` (the default, the paper's): an LSTM controller trained with REINFORCE on val-minibatch rewards.

During PreTrain the controller is frozen and minibatches are uniform; after it, each epoch's
minibatches follow the policy, then `controller_steps` REINFORCE steps of `controller_samples`
architectures each move it. Derivation scores `derive_samples` samples plus the greedy argmax.
"""
from __future__ import annotations

import torch

from facenar.search.controller import Reinforce
from facenar.search.strategies import STRATEGIES
from facenar.search.strategies.base import Scoring, Strategy


@STRATEGIES.register("enas", summary="LSTM controller + REINFORCE (the paper; default)")
class EnasStrategy(Strategy):
    name = "enas"
    curve = (("entropy",), "policy entropy (nats)")
    OPTIONS = ("controller_steps", "controller_lr", "entropy_weight", "baseline_decay", "tanh_constant",
               "temperature", "skip_weight", "skip_target")

    def __init__(self, space, cfg, budget, arch_gen: torch.Generator):
        super().__init__(space, cfg, budget, arch_gen)
        self.controller = space.controller()
        self.trainer = Reinforce(self.controller, lr=cfg.controller_lr, baseline_decay=cfg.baseline_decay,
                                 entropy_weight=cfg.entropy_weight)

    def train_archs(self, epoch: int, steps: int) -> list[list[int]]:
        if epoch < self.cfg.pretrain_epochs:
            return super().train_archs(epoch, steps)
        with torch.no_grad():
            return self.controller.sample(steps, self.arch_gen).codes

    def learn(self, epoch: int, scoring: Scoring) -> dict:
        """REINFORCE steps after PreTrain; during PreTrain only score uniform samples for the record."""
        cfg = self.cfg
        if epoch < cfg.pretrain_epochs:
            return {**self.score_uniform(scoring, "pretrain", self.controller), "baseline": self.trainer.baseline}
        steps = []
        for _ in range(cfg.controller_steps):
            images, labels = scoring.draw()
            steps.append(self.trainer.step(lambda batch: scoring.score(batch, images, labels),
                                           cfg.controller_samples, self.arch_gen))
        best = max(steps, key=lambda s: s["reward_max"])
        return {"phase": "search", "reward_mean": sum(s["reward_mean"] for s in steps) / len(steps),
                "reward_max": best["reward_max"], "best_codes": best["best_codes"],
                "entropy": sum(s["entropy"] for s in steps) / len(steps), "baseline": self.trainer.baseline,
                **{key: sum(s[key] for s in steps) / len(steps) for key in self.space.extra_columns}}

    def candidates(self, generator: torch.Generator, scoring: Scoring) -> list[list[int]]:
        with torch.no_grad():
            sampled = self.controller.sample(self.cfg.derive_samples, generator).codes if self.cfg.derive_samples else []
        return sampled + [self.controller.greedy()]

    def describe_candidates(self, candidates: list[list[int]], rewards: list[float]) -> dict:
        return {"greedy_reward": rewards[-1], "greedy_codes": candidates[-1]}  # the greedy argmax comes last

    def state_dict(self) -> dict:
        return {"reinforce": self.trainer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.trainer.load_state_dict(state["reinforce"])
