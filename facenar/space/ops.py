"""Candidate operators of the NAR search space: each replaces one 3x3 conv (Cin->Cout, stride s).

The registry maps a name to `builder(cin, cout, stride) -> nn.Module`; every op keeps the
replaced conv's output shape, so any op fits any slot and BN/PReLU/shortcut stay untouched.
The first four (PAPER_OPS, codes 0-3) are the paper's face candidates; the 5x5 ops complete
ENAS's set. Pooling ops average over real pixels only (count_include_pad=False) so a border
pixel is not darkened by zero padding; their 1x1 conv adapts the channel count.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

PAPER_OPS = ("conv3x3", "dwconv3x3", "max3x3", "avg3x3")


def _conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)


def conv(kernel: int) -> Callable[[int, int, int], nn.Module]:
    """Plain kxk convolution (the original operator for k=3)."""

    def build(cin: int, cout: int, stride: int) -> nn.Module:
        return _conv(cin, cout, kernel, stride)

    return build


def dwconv(kernel: int) -> Callable[[int, int, int], nn.Module]:
    """Depthwise kxk (stride s, groups=Cin) followed by a pointwise 1x1 Cin->Cout."""

    def build(cin: int, cout: int, stride: int) -> nn.Module:
        return nn.Sequential(_conv(cin, cin, kernel, stride, groups=cin), _conv(cin, cout, 1))

    return build


def pool(kind: str) -> Callable[[int, int, int], nn.Module]:
    """3x3 max or average pooling (stride s, pad 1) followed by a 1x1 Cin->Cout."""

    def build(cin: int, cout: int, stride: int) -> nn.Module:
        if kind == "max":
            layer = nn.MaxPool2d(3, stride=stride, padding=1)
        else:
            layer = nn.AvgPool2d(3, stride=stride, padding=1, count_include_pad=False)
        return nn.Sequential(layer, _conv(cin, cout, 1))

    return build


OPS: dict[str, Callable[[int, int, int], nn.Module]] = {
    "conv3x3": conv(3),
    "dwconv3x3": dwconv(3),
    "max3x3": pool("max"),
    "avg3x3": pool("avg"),
    "conv5x5": conv(5),
    "dwconv5x5": dwconv(5),
}


def build_op(name: str, cin: int, cout: int, stride: int) -> nn.Module:
    """One operator from the registry; a clear error for unknown names or strides."""
    if name not in OPS:
        raise ValueError(f"unknown operator {name!r}; known: {', '.join(OPS)}")
    if stride not in (1, 2):
        raise ValueError(f"operator stride must be 1 or 2, got {stride}")
    return OPS[name](cin, cout, stride)
