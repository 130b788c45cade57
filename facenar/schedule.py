"""Learning-rate schedules as pure functions of training progress.

A pure function of (fractional) epoch needs no scheduler state, so a resumed run continues the
schedule bit-for-bit from its step counter alone.
"""
from __future__ import annotations

import math

import torch


def sgdr_lr(epoch: float, t0: float, t_mult: float, lr_max: float, lr_min: float) -> float:
    """Cosine annealing with warm restarts (Loshchilov & Hutter): cycles of t0, t0*t_mult, ... epochs."""
    if epoch < 0:
        raise ValueError("epoch must be >= 0")
    cycle_len, start = float(t0), 0.0
    while epoch >= start + cycle_len:
        start += cycle_len
        cycle_len *= t_mult
    frac = (epoch - start) / cycle_len
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * frac))


def sgdr_total_epochs(t0: int, t_mult: int, cycles: int) -> int:
    """Epochs in `cycles` full SGDR cycles (t0=10, t_mult=2, 4 cycles -> 150, the paper's search)."""
    return int(sum(t0 * t_mult**i for i in range(cycles)))


def poly_lr(epoch: float, total_epochs: float, lr_max: float, power: float = 1.0) -> float:
    """insightface arcface_torch's polynomial (by default linear) decay to zero."""
    return lr_max * max(0.0, 1.0 - epoch / total_epochs) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
