"""Counting on the meta device: parameters and multiply-adds of a module, and the report that holds them.

Its own module because both the cost of a NAR architecture (facenar.space.cost) and of a ResNet
child (facenar.space.resnet.resnet_cost) count with it, and cost.py builds networks from resnet.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class CostReport:
    params: int
    macs: int
    per_slot: list[dict] = field(default_factory=list)


def count_macs(module: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of one forward pass of `module` (built on the meta device) on one input."""
    with torch.device("meta"), FlopCounterMode(display=False) as counter:
        module.eval()(torch.empty(input_shape))  # eval: BN1d accepts a batch of one
    return counter.get_total_flops() // 2


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
