"""ENAS-style LSTM controller that picks one operator per slot, and its REINFORCE training.

The controller is independent of any network: it only sees slot counts and a reward function,
so it can be checked against rewards with a known optimum before it steers a real search.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

RewardFn = Callable[[list[int]], float]


@dataclass
class Sample:
    """A batch of sampled architectures with what REINFORCE needs (both summed over slots).

    A controller may add a differentiable `penalty` [M] (added to the loss, e.g. ENAS's skip
    penalty) and detached per-sample `stats` [M] that the trainer reports as batch means.
    """

    codes: list[list[int]]
    log_prob: torch.Tensor  # [M]
    entropy: torch.Tensor  # [M]
    penalty: torch.Tensor | None = None  # [M]
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


class Controller(nn.Module):
    """LSTM policy: start input -> choice 1 -> embedding(choice 1) -> choice 2 -> ...

    logits = tanh_constant * tanh(W_s h / temperature); the tanh constant caps how sure the
    policy can get (at 1.5 and 4 ops the top op has p <= 0.87), which keeps exploring. Each slot
    has its own output layer W_s so a per-slot preference need not be encoded in h alone.
    """

    def __init__(self, num_slots: int, num_ops: int, hidden_size: int = 64, tanh_constant: float | None = 1.5,
                 temperature: float | None = None, init_range: float = 0.1):
        super().__init__()
        if num_slots < 1 or num_ops < 2:
            raise ValueError("a controller needs at least one slot and two ops")
        self.num_slots, self.num_ops = num_slots, num_ops
        self.tanh_constant, self.temperature = tanh_constant, temperature
        self.start = nn.Parameter(torch.empty(1, hidden_size))
        self.embed = nn.Embedding(num_ops, hidden_size)
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.Parameter(torch.empty(num_slots, num_ops, hidden_size))
        for param in self.parameters():
            nn.init.uniform_(param, -init_range, init_range)

    def _logits(self, slot: int, hidden: torch.Tensor) -> torch.Tensor:
        logits = hidden @ self.heads[slot].t()
        if self.temperature:
            logits = logits / self.temperature
        if self.tanh_constant:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _unroll(self, batch: int, choose: Callable[[torch.Tensor, int], torch.Tensor]) -> Sample:
        inputs = self.start.expand(batch, -1)
        state = None
        chosen, log_prob, entropy = [], 0.0, 0.0
        for slot in range(self.num_slots):
            state = self.lstm(inputs, state)
            log_p = finite_policy(torch.log_softmax(self._logits(slot, state[0]), dim=-1))
            choice = choose(log_p, slot)
            log_prob = log_prob + log_p.gather(1, choice[:, None]).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(dim=1)
            chosen.append(choice)
            inputs = self.embed(choice)
        codes = torch.stack(chosen, dim=1).tolist()
        return Sample(codes=codes, log_prob=log_prob, entropy=entropy)

    def sample(self, count: int = 1, generator: torch.Generator | None = None) -> Sample:
        """`count` architectures drawn from the policy (differentiable log-probabilities)."""
        return self._unroll(count, lambda log_p, _: torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1))

    def log_prob_of(self, codes: Sequence[Sequence[int]]) -> Sample:
        """Log-probability and entropy of given architectures (teacher forcing)."""
        target = torch.as_tensor(codes, dtype=torch.long)
        return self._unroll(len(target), lambda _, slot: target[:, slot])

    @torch.no_grad()
    def greedy(self) -> list[int]:
        """The most likely op at every slot, each conditioned on the previous greedy choices."""
        return self._unroll(1, lambda log_p, _: log_p.argmax(dim=1)).codes[0]

    @torch.no_grad()
    def greedy_probs(self) -> list[list[float]]:
        """Per-slot op probabilities along the greedy path (what the policy 'believes')."""
        rows: list[list[float]] = []

        def choose(log_p, _):
            rows.append(log_p.exp()[0].tolist())
            return log_p.argmax(dim=1)

        self._unroll(1, choose)
        return rows


def uniform_entropy(num_slots: int, num_ops: int) -> float:
    return num_slots * math.log(num_ops)


def finite_policy(probabilities: torch.Tensor) -> torch.Tensor:
    """The policy's (log-)probabilities, or FloatingPointError when weights grew past float32 arithmetic
    (torch.multinomial's own error would not say what to change)."""
    if not torch.isfinite(probabilities).all():
        raise FloatingPointError("controller policy became non-finite; lower --controller-lr")
    return probabilities


def all_finite(tensors) -> bool:
    """Whether every value of every tensor is finite (one device sync for all of them)."""
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(flags).all()) if flags else True


class Reinforce:
    """REINFORCE with a moving-average baseline and an entropy bonus; Adam(beta1=0).

    The baseline starts at the first step's mean reward rather than 0 so the first updates are
    not dominated by a large all-positive advantage.
    """

    def __init__(self, controller: Controller, lr: float = 1e-3, baseline_decay: float = 0.99,
                 entropy_weight: float = 1e-4, betas: tuple[float, float] = (0.0, 0.999)):
        self.controller = controller
        self.optimizer = torch.optim.Adam(controller.parameters(), lr=lr, betas=betas)
        self.baseline_decay, self.entropy_weight = baseline_decay, entropy_weight
        self.baseline: float | None = None

    def step(self, reward_batch: Callable[[list[list[int]]], Sequence[float]], samples: int,
             generator: torch.Generator | None = None) -> dict:
        """Sample `samples` architectures, score them all at once, take one policy-gradient step."""
        drawn = self.controller.sample(samples, generator)
        rewards = torch.as_tensor([float(r) for r in reward_batch(drawn.codes)], dtype=torch.float32)
        shaped = rewards + self.entropy_weight * drawn.entropy.detach()
        if self.baseline is None:
            self.baseline = float(shaped.mean())
        advantage = shaped - self.baseline
        loss = -(drawn.log_prob * advantage).mean()
        if drawn.penalty is not None:
            loss = loss + drawn.penalty.mean()
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"controller loss became {loss.item()}; lower --controller-lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if not all_finite(self.controller.parameters()):
            raise FloatingPointError("controller weights became non-finite; lower --controller-lr")
        self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * float(shaped.mean())
        best = int(rewards.argmax())
        return {"reward_mean": float(rewards.mean()), "reward_max": float(rewards[best]),
                "best_codes": drawn.codes[best], "entropy": float(drawn.entropy.detach().mean()),
                "baseline": self.baseline, "codes": drawn.codes, "rewards": rewards.tolist(),
                **{name: float(value.mean()) for name, value in drawn.stats.items()}}

    def state_dict(self) -> dict:
        return {"controller": self.controller.state_dict(), "optimizer": self.optimizer.state_dict(),
                "baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.controller.load_state_dict(state["controller"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = state["baseline"]


def reinforce(controller: Controller, reward_fn: RewardFn, steps: int, samples_per_step: int = 20,
              seed: int = 0, **hyper) -> list[dict]:
    """Train `controller` on a plain reward function; history = per-step means (reward, entropy, stats)."""
    generator = torch.Generator().manual_seed(seed)
    trainer = Reinforce(controller, **hyper)
    history = []
    for _ in range(steps):
        stats = trainer.step(lambda batch: [reward_fn(codes) for codes in batch], samples_per_step, generator)
        history.append({k: v for k, v in stats.items() if k not in ("codes", "rewards", "best_codes")})
    return history
