"""Learning-rate schedules as pure functions of training progress.

A pure function of (fractional) epoch needs no scheduler state, so a resumed run continues the
schedule bit-for-bit from its step counter alone.
"""
from __future__ import annotations

import math

import torch


def schedule_problem(t0: float, t_mult: float, lr_max: float, lr_min: float) -> str | None:
    """Why an SGDR schedule is unusable (a cycle that never ends, or shrinks to nothing), else None.

    Configs call this before any work, so a bad option is one line up front, never a hang.
    """
    values = {"t0": t0, "t_mult": t_mult, "lr_max": lr_max, "lr_min": lr_min}
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        return f"{', '.join(bad)} must be finite"
    if t0 < 1:
        return f"t0 (first cycle length in epochs) must be >= 1, got {t0:g}"
    if t_mult < 1:
        return f"t_mult (cycle growth factor) must be >= 1, got {t_mult:g}"
    if not 0 <= lr_min <= lr_max:
        return f"learning rates must satisfy 0 <= lr_min <= lr_max, got lr_min {lr_min:g}, lr_max {lr_max:g}"
    return None


def validate_schedule(t0: float, t_mult: float, lr_max: float, lr_min: float) -> None:
    problem = schedule_problem(t0, t_mult, lr_max, lr_min)
    if problem:
        raise ValueError(problem)


def sgdr_lr(epoch: float, t0: float, t_mult: float, lr_max: float, lr_min: float) -> float:
    """Cosine annealing with warm restarts (Loshchilov & Hutter): cycles of t0, t0*t_mult, ... epochs."""
    if not epoch >= 0 or not math.isfinite(epoch):
        raise ValueError(f"epoch must be a finite number >= 0, got {epoch}")
    validate_schedule(t0, t_mult, lr_max, lr_min)
    cycle_len, start = float(t0), 0.0
    while epoch >= start + cycle_len:
        start += cycle_len
        cycle_len *= t_mult
    frac = (epoch - start) / cycle_len
    return lr_min + 0.5 * (lr_max - lr_min) * (1.0 + math.cos(math.pi * frac))


def poly_lr(epoch: float, total_epochs: float, lr_max: float, power: float = 1.0) -> float:
    """insightface arcface_torch's polynomial (by default linear) decay to zero."""
    return lr_max * max(0.0, 1.0 - epoch / total_epochs) ** power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


LR_SCALES = ("linear", "none")


def lr_scale_factor(rule: str, global_batch: int, reference_batch: int) -> float:
    """--lr-scale: linear multiplies the whole schedule (peak and floor) by global batch / reference."""
    return global_batch / reference_batch if rule == "linear" else 1.0


def describe_lr(lr: float, lr_min: float, factor: float, rule: str, batch_size: int, world_size: int) -> str:
    """The run log's learning-rate line: what the schedule really is, and the global batch it serves."""
    return (f"learning rate: peak {lr * factor:g}, floor {lr_min * factor:g} (--lr {lr:g} x {factor:g}, "
            f"--lr-scale {rule}); global batch {batch_size * world_size} = {batch_size} x {world_size} process(es)")
