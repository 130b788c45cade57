"""The controller learns known optima from plain reward functions (no network involved)."""
from __future__ import annotations

import copy
import random

import pytest
import torch

from facenar.search.controller import Controller, Reinforce, reinforce

SLOTS, OPS = 24, 4


def _target(seed: int = 123) -> list[int]:
    return torch.randint(0, OPS, (SLOTS,), generator=torch.Generator().manual_seed(seed)).tolist()


def test_sample_shapes_and_log_prob_consistency():
    torch.manual_seed(0)
    ctrl = Controller(SLOTS, OPS)
    drawn = ctrl.sample(5, torch.Generator().manual_seed(1))
    assert len(drawn.codes) == 5 and all(len(c) == SLOTS and all(0 <= o < OPS for o in c) for c in drawn.codes)
    again = ctrl.log_prob_of(drawn.codes)
    assert torch.allclose(drawn.log_prob, again.log_prob)
    assert torch.allclose(drawn.entropy, again.entropy)
    # fresh controller: near-uniform, entropy close to the maximum, log-prob close to -S ln K
    assert drawn.entropy.mean().item() == pytest.approx(SLOTS * torch.log(torch.tensor(4.0)).item(), rel=0.02)


def test_tanh_constant_caps_probabilities():
    ctrl = Controller(3, 4, tanh_constant=1.5)
    with torch.no_grad():
        ctrl.heads.mul_(1000.0)  # saturate the tanh
    top = max(max(row) for row in ctrl.greedy_probs())
    cap = torch.softmax(torch.tensor([1.5, -1.5, -1.5, -1.5]), 0)[0].item()
    assert top <= cap + 1e-6


def test_same_seed_same_samples_and_state_dict_roundtrip():
    torch.manual_seed(0)
    a = Controller(6, 3)
    b = Controller(6, 3)
    b.load_state_dict(a.state_dict())
    sa = a.sample(4, torch.Generator().manual_seed(7)).codes
    sb = b.sample(4, torch.Generator().manual_seed(7)).codes
    assert sa == sb and a.greedy() == b.greedy()


def test_known_answer_greedy_finds_hidden_target():
    """reward = fraction of slots equal to a hidden target: greedy must equal it after 3,000 samples."""
    target = _target()

    def reward(codes):
        return sum(a == b for a, b in zip(codes, target)) / SLOTS

    torch.manual_seed(0)
    ctrl = Controller(SLOTS, OPS)
    history = reinforce(ctrl, reward, steps=150, samples_per_step=20, seed=0)
    assert ctrl.greedy() == target
    assert history[-1]["reward_mean"] > history[0]["reward_mean"] + 0.3
    assert history[-1]["entropy"] < history[0]["entropy"]
    rng = random.Random(0)
    best_random = max(reward([rng.randrange(OPS) for _ in range(SLOTS)]) for _ in range(150 * 20))
    assert best_random < 0.75  # as many random architectures stay far from the target


def test_tradeoff_reward_reaches_known_optimum():
    """accuracy proxy minus cost, separable per slot: the optimum is argmax_o(acc[s][o] - lam*cost[o])."""
    gen = torch.Generator().manual_seed(5)
    acc = torch.rand(SLOTS, OPS, generator=gen) * 0.1
    cost = torch.tensor([1.0, 0.4, 0.1, 0.1])
    lam = 0.05
    utility = acc - lam * cost
    optimum = utility.argmax(dim=1).tolist()
    assert len(set(optimum)) > 1  # not a trivial all-same answer

    def reward(codes):
        return float(sum(utility[s, o] for s, o in enumerate(codes)))

    torch.manual_seed(1)
    ctrl = Controller(SLOTS, OPS)
    reinforce(ctrl, reward, steps=200, samples_per_step=20, seed=1)
    found = ctrl.greedy()
    assert reward(found) >= reward(optimum) - 0.02
    assert sum(a == b for a, b in zip(found, optimum)) >= SLOTS - 2


def test_reinforce_step_is_resumable():
    """A trainer restored from state_dict continues exactly like the uninterrupted one."""
    def reward(codes):
        return sum(codes) / (3 * len(codes))

    torch.manual_seed(0)
    a = Reinforce(Controller(5, 4))
    gen_a = torch.Generator().manual_seed(3)
    for _ in range(3):
        a.step(lambda batch: [reward(c) for c in batch], 4, gen_a)
    b = Reinforce(Controller(5, 4))
    b.load_state_dict(copy.deepcopy(a.state_dict()))  # as if read back from a checkpoint file
    gen_b = torch.Generator().set_state(gen_a.get_state())
    for _ in range(3):
        sa = a.step(lambda batch: [reward(c) for c in batch], 4, gen_a)
        sb = b.step(lambda batch: [reward(c) for c in batch], 4, gen_b)
        assert sa == sb
