"""The operator registry of every search space: NAR's ops (each replaces one 3x3 conv) and ENAS's branches.

An Operator holds the form each space builds: for NAR `nar(cin, cout, stride) -> nn.Module`, which
keeps the replaced conv's output shape, so any op fits any slot and BN/PReLU/shortcut stay untouched;
for ENAS's macro space `enas(channels)`, one layer's branch at constant width.
The first four (PAPER_OPS, codes 0-3) are the paper's face candidates; the 5x5 ops complete
ENAS's set. Pooling ops (facenar.space.pooling) average over real pixels only so a border
pixel is not darkened by zero padding; their 1x1 conv adapts the channel count.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from facenar.registry import Registry
from facenar.space.pooling import AvgPool3x3, MaxPool3x3

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
        return nn.Sequential(MaxPool3x3(stride) if kind == "max" else AvgPool3x3(stride), _conv(cin, cout, 1))

    return build


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def enas_branch(kind: str, kernel: int = 3) -> Callable[[int], nn.Module]:
    """ENAS's branches: 1x1 conv-BN-ReLU, then a kxk (separable) conv-BN-ReLU or a 3x3 stride-1 pool."""

    def build(channels: int) -> nn.Module:
        head = _conv_bn_relu(channels, channels, 1)
        if kind == "conv":
            tail = _conv_bn_relu(channels, channels, kernel)
        elif kind == "sepconv":  # depthwise then pointwise, one BN (TF separable_conv2d)
            tail = [nn.Conv2d(channels, channels, kernel, padding=kernel // 2, groups=channels, bias=False),
                    *_conv_bn_relu(channels, channels, 1)]
        elif kind == "avg":  # TF "SAME" average pooling divides by the real pixels only
            tail = [AvgPool3x3(1)]
        else:
            tail = [MaxPool3x3(1)]
        return nn.Sequential(*head, *tail)

    return build


@dataclass(frozen=True)
class Operator:
    """One candidate operator in the form each search space builds it (None: not a candidate there)."""

    nar: Callable[[int, int, int], nn.Module] | None = None   # replaces a conv: (cin, cout, stride) -> module
    enas: Callable[[int], nn.Module] | None = None            # one ENAS macro layer's branch: (channels) -> module


# the one operator vocabulary of every space; a new operator is one `register(...)` line here (or in a
# module added to `modules`), and the spaces, CLI choices and tests pick it up by name
OPERATORS: Registry[Operator] = Registry("operator", modules=(__name__,))
for _name, _summary, _operator in (
        ("conv3x3", "3x3 convolution (the original operator)", Operator(conv(3), enas_branch("conv", 3))),
        ("dwconv3x3", "depthwise 3x3 then pointwise 1x1", Operator(dwconv(3))),
        ("max3x3", "3x3 max pooling then 1x1", Operator(pool("max"))),
        ("avg3x3", "3x3 average pooling then 1x1", Operator(pool("avg"))),
        ("conv5x5", "5x5 convolution", Operator(conv(5), enas_branch("conv", 5))),
        ("dwconv5x5", "depthwise 5x5 then pointwise 1x1", Operator(dwconv(5))),
        ("sepconv3x3", "ENAS: separable 3x3 convolution", Operator(enas=enas_branch("sepconv", 3))),
        ("sepconv5x5", "ENAS: separable 5x5 convolution", Operator(enas=enas_branch("sepconv", 5))),
        ("avgpool3x3", "ENAS: 3x3 average pooling, stride 1", Operator(enas=enas_branch("avg"))),
        ("maxpool3x3", "ENAS: 3x3 max pooling, stride 1", Operator(enas=enas_branch("max")))):
    OPERATORS.register(_name, summary=_summary)(_operator)


def space_ops(space: str) -> tuple[str, ...]:
    """The operators a space ("nar" or "enas") can build, in registration order."""
    return tuple(name for name in OPERATORS if getattr(OPERATORS.get(name), space) is not None)


def build_op(name: str, cin: int, cout: int, stride: int) -> nn.Module:
    """One NAR operator from the registry; a clear error for unknown names or strides."""
    if name not in space_ops("nar"):
        raise ValueError(f"unknown operator {name!r}; known: {', '.join(space_ops('nar'))}")
    if stride not in (1, 2):
        raise ValueError(f"operator stride must be 1 or 2, got {stride}")
    return OPERATORS.get(name).nar(cin, cout, stride)


def build_enas_op(name: str, channels: int) -> nn.Module:
    """One ENAS macro-space branch from the registry."""
    if name not in space_ops("enas"):
        raise ValueError(f"unknown macro operator {name!r}; known: {', '.join(space_ops('enas'))}")
    return OPERATORS.get(name).enas(channels)
