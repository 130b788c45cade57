"""ENAS's macro controller: an LSTM that picks each layer's op and, by attention, its skip connections.

Per layer k it takes two LSTM steps (ENAS general_controller, whole-channels mode):
  1. op step: input = the start vector (k = 0) or the skip summary of layer k-1 (below);
     op ~ softmax(W_k h) (one output layer per layer, like facenar.search.controller.Controller).
  2. skip step: input = embedding(op); its hidden state h_k is layer k's anchor. For k >= 1,
     p(skip j -> k) = sigmoid(v^T tanh(W_prev h_j + W_curr h_k)) for every earlier anchor j,
     each bit ~ Bernoulli(p); the next op step's input is sum_j bit_j h_j / (1 + sum_j bit_j).
Logits pass through tanh_constant * tanh(.), as in ENAS (1.5 there), which bounds every
probability away from 0 and 1. ENAS samples a skip from softmax([-a, a]) (= sigmoid(2a)) but
penalises sigmoid(a); here one p is both sampled and penalised.

Codes are ENAS's flat arc format (facenar.space.macro): per layer [op, k skip bits].

Skip statistics per sample (all along the sampled path, over the L(L-1)/2 connections):
  skip_prob: mean p;  skip_kl_half: mean KL(Bernoulli(p) || Bernoulli(0.5)), the paper's Fig. 1
  quantity (0 when every p = 0.5, log 2 = 0.693 when every p is 0 or 1).
ENAS's skip penalty (switch off with skip_weight=0): skip_weight times the mean over layers
k >= 1 of sum_j KL(Bernoulli(p_jk) || Bernoulli(skip_target)), exactly ENAS's aggregation;
it reaches the REINFORCE loss as Sample.penalty.

Parameters start uniform in +-0.3 (ENAS: +-0.1). At +-0.1 the LSTM states of different layers
are so alike that the attention gives every connection the same p, and once the capped logits
saturate that never recovers (the known-answer test then stalls at "all skips on"); at +-0.3
the per-source pattern of a hidden target is learnt within 3,000 samples.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facenar.search.controller import Sample, finite_policy
from facenar.space.macro import ENAS_CANDIDATES, num_codes

PickOp = Callable[[torch.Tensor, int], torch.Tensor]  # (log-probs [M, ops], code position) -> [M]
PickSkips = Callable[[torch.Tensor, int], torch.Tensor]  # (p [M, k], first code position) -> [M, k] in {0, 1}


def bernoulli_kl(p: torch.Tensor, target: float) -> torch.Tensor:
    """KL(Bernoulli(p) || Bernoulli(target)) elementwise, finite at p = 0 or 1."""
    return torch.xlogy(p, p / target) + torch.xlogy(1 - p, (1 - p) / (1 - target))


class MacroController(nn.Module):
    """LSTM policy over ENAS macro architectures; same interface as facenar.search.controller.Controller."""

    def __init__(self, num_layers: int, num_ops: int = len(ENAS_CANDIDATES), hidden_size: int = 64,
                 tanh_constant: float | None = 1.5, temperature: float | None = None,
                 skip_target: float = 0.4, skip_weight: float = 0.8, init_range: float = 0.3):
        super().__init__()
        if num_layers < 2 or num_ops < 2:
            raise ValueError("a macro controller needs at least two layers (for a skip) and two ops")
        if not 0 < skip_target < 1 or skip_weight < 0:
            raise ValueError("skip_target must lie in (0, 1) and skip_weight be >= 0 (0 switches it off)")
        self.num_layers, self.num_ops = num_layers, num_ops
        self.tanh_constant, self.temperature = tanh_constant, temperature
        self.skip_target, self.skip_weight = skip_target, skip_weight
        self.start = nn.Parameter(torch.empty(1, hidden_size))
        self.embed = nn.Embedding(num_ops, hidden_size)
        self.lstm = nn.LSTMCell(hidden_size, hidden_size)
        self.heads = nn.Parameter(torch.empty(num_layers, num_ops, hidden_size))
        self.w_prev = nn.Linear(hidden_size, hidden_size, bias=False)
        self.w_curr = nn.Linear(hidden_size, hidden_size, bias=False)
        self.v = nn.Parameter(torch.empty(hidden_size))
        for param in self.parameters():
            nn.init.uniform_(param, -init_range, init_range)

    @property
    def num_slots(self) -> int:
        """Length of one architecture's flat codes."""
        return num_codes(self.num_layers)

    def _squash(self, logits: torch.Tensor) -> torch.Tensor:
        if self.temperature:
            logits = logits / self.temperature
        if self.tanh_constant:
            logits = self.tanh_constant * torch.tanh(logits)
        return logits

    def _unroll(self, batch: int, pick_op: PickOp, pick_skips: PickSkips) -> Sample:
        start = self.start.expand(batch, -1)
        inputs, state = start, None
        anchors, anchors_prev = [], []
        columns, log_prob, entropy = [], 0.0, 0.0
        penalty, kl_half, p_sum = 0.0, 0.0, 0.0
        pos = 0
        for layer in range(self.num_layers):
            state = self.lstm(inputs, state)
            log_p = finite_policy(torch.log_softmax(self._squash(state[0] @ self.heads[layer].t()), dim=-1))
            op = pick_op(log_p, pos)
            log_prob = log_prob + log_p.gather(1, op[:, None]).squeeze(1)
            entropy = entropy - (log_p.exp() * log_p).sum(dim=1)
            columns.append(op[:, None])
            state = self.lstm(self.embed(op), state)
            hidden, pos = state[0], pos + 1
            inputs = start
            if layer > 0:
                earlier = torch.stack(anchors, dim=1)  # [M, k, H]
                score = torch.tanh(torch.stack(anchors_prev, dim=1) + self.w_curr(hidden)[:, None]) @ self.v
                logit = self._squash(score)  # [M, k]
                p = finite_policy(torch.sigmoid(logit))
                bits = pick_skips(p.detach(), pos).to(p.dtype)
                log_prob = log_prob + (bits * F.logsigmoid(logit) + (1 - bits) * F.logsigmoid(-logit)).sum(1)
                entropy = entropy + (math.log(2) - bernoulli_kl(p, 0.5)).sum(1)  # Bernoulli entropy
                penalty = penalty + bernoulli_kl(p, self.skip_target).sum(1)
                kl_half = kl_half + bernoulli_kl(p, 0.5).detach().sum(1)
                p_sum = p_sum + p.detach().sum(1)
                columns.append(bits.long())
                inputs = (bits[:, :, None] * earlier).sum(1) / (1 + bits.sum(1, keepdim=True))
                pos += layer
            anchors.append(hidden)
            anchors_prev.append(self.w_prev(hidden))
        connections = self.num_slots - self.num_layers
        return Sample(codes=torch.cat(columns, dim=1).tolist(), log_prob=log_prob, entropy=entropy,
                      penalty=self.skip_weight * penalty / (self.num_layers - 1) if self.skip_weight else None,
                      stats={"skip_prob": p_sum / connections, "skip_kl_half": kl_half / connections})

    def sample(self, count: int = 1, generator: torch.Generator | None = None) -> Sample:
        """`count` architectures drawn from the policy (differentiable log-probabilities)."""
        return self._unroll(count,
                            lambda log_p, _: torch.multinomial(log_p.exp(), 1, generator=generator).squeeze(1),
                            lambda p, _: torch.bernoulli(p, generator=generator))

    def log_prob_of(self, codes: Sequence[Sequence[int]]) -> Sample:
        """Log-probability, entropy and skip statistics of given architectures (teacher forcing)."""
        target = torch.as_tensor(codes, dtype=torch.long)
        if target.dim() != 2 or target.shape[1] != self.num_slots:
            raise ValueError(f"expected codes of length {self.num_slots}, got shape {tuple(target.shape)}")
        return self._unroll(len(target), lambda _, pos: target[:, pos],
                            lambda p, pos: target[:, pos:pos + p.shape[1]])

    @torch.no_grad()
    def greedy(self) -> list[int]:
        """The most likely op at every layer and every skip with p > 0.5, along the greedy path."""
        return self._unroll(1, lambda log_p, _: log_p.argmax(dim=1), lambda p, _: (p > 0.5).long()).codes[0]
