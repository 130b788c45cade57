"""insightface iresnet (LResNet-E-IR) with a pluggable operator at every 3x3-conv site.

The same skeleton builds both a child network (one op per site) and the supernet (a choice of
ops per site), so the two cannot drift apart. Module names follow insightface's arcface_torch
(`conv1, bn1, prelu, layer1..4, bn2, dropout, fc, features`), so an all-conv3x3 child's
state_dict has exactly the keys and shapes of insightface's iresnet.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

from facenar.space.arch import BACKBONES, GRANULARITIES, STAGE_WIDTHS, Arch, scale_channels
from facenar.space.ops import build_op

BN_EPS = 1e-5

# make_op(slot, cin, cout, stride) -> module put at one conv site
OpFactory = Callable[[int, int, int, int], nn.Module]


class BlockSpec(NamedTuple):
    """One IR block: where it sits and the shapes its two convs see."""

    stage: int
    index: int
    cin: int
    cout: int
    stride: int
    in_size: int
    out_size: int


class ConvSite(NamedTuple):
    """One 3x3-conv site: the slot that chooses its op and the conv it replaces."""

    slot: int
    stage: int
    path: str
    cin: int
    cout: int
    stride: int
    in_size: int


def block_specs(backbone: str, width: float = 1.0, input_size: int = 112) -> list[BlockSpec]:
    specs, size = [], input_size
    cin = scale_channels(STAGE_WIDTHS[0], width)
    for stage, (blocks, base) in enumerate(zip(BACKBONES[backbone], STAGE_WIDTHS)):
        cout = scale_channels(base, width)
        for index in range(blocks):
            stride = 2 if index == 0 else 1
            out = (size - 1) // stride + 1  # 3x3 kernel, padding 1
            specs.append(BlockSpec(stage, index, cin, cout, stride, size, out))
            cin, size = cout, out
    return specs


def conv_sites(backbone: str, width: float = 1.0, input_size: int = 112,
               granularity: str = "block") -> list[ConvSite]:
    """Both conv sites of every block, in network order, with the slot that controls each."""
    per_block = GRANULARITIES[granularity]
    sites = []
    for number, spec in enumerate(block_specs(backbone, width, input_size)):
        prefix = f"layer{spec.stage + 1}.{spec.index}"
        first, second = (number, number) if per_block == 1 else (2 * number, 2 * number + 1)
        sites.append(ConvSite(first, spec.stage, f"{prefix}.conv1", spec.cin, spec.cout, 1, spec.in_size))
        sites.append(ConvSite(second, spec.stage, f"{prefix}.conv2", spec.cout, spec.cout, spec.stride, spec.in_size))
    return sites


def add_stages(net: nn.Module, specs: list[BlockSpec], sites: list[ConvSite], make_op: OpFactory, block) -> None:
    """`layer1..4` of a ResNet-style network (iresnet and ResNet alike): each block gets the ops of its two
    conv sites, in network order, so children and supernets are built by one loop."""
    site = iter(sites)
    for stage in range(4):
        blocks = []
        for spec in (s for s in specs if s.stage == stage):
            a, b = next(site), next(site)
            blocks.append(block(spec.cin, spec.cout, spec.stride, make_op(a.slot, a.cin, a.cout, a.stride),
                                make_op(b.slot, b.cin, b.cout, b.stride)))
        setattr(net, f"layer{stage + 1}", nn.Sequential(*blocks))


class IRBlock(nn.Module):
    """BN - op1 - BN - PReLU - op2(stride) - BN, plus identity or conv1x1+BN shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, conv1: nn.Module, conv2: nn.Module):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=BN_EPS)
        self.conv1 = conv1
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.prelu = nn.PReLU(cout)
        self.conv2 = conv2
        self.bn3 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return out + shortcut


class IResNet(nn.Module):
    """Stem, four stages of IR blocks, "E" output (BN2d-Dropout-FC-BN1d) -> embedding."""

    def __init__(self, backbone: str, make_op: OpFactory, width: float = 1.0, input_size: int = 112,
                 embedding_size: int = 512, granularity: str = "block", dropout: float = 0.0):
        super().__init__()
        self.backbone, self.width, self.input_size = backbone, width, input_size
        self.embedding_size, self.granularity = embedding_size, granularity
        specs = block_specs(backbone, width, input_size)
        self.sites = conv_sites(backbone, width, input_size, granularity)
        stem = specs[0].cin
        self.conv1 = nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem, eps=BN_EPS)
        self.prelu = nn.PReLU(stem)
        add_stages(self, specs, self.sites, make_op, IRBlock)
        last = specs[-1]
        self.bn2 = nn.BatchNorm2d(last.cout, eps=BN_EPS)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(last.cout * last.out_size ** 2, embedding_size)
        self.features = nn.BatchNorm1d(embedding_size, eps=BN_EPS)
        self._init_like_insightface()

    def _init_like_insightface(self) -> None:
        """insightface: conv ~ N(0, 0.1), BN gamma 1 / beta 0, embedding-BN gamma fixed at 1."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0, 0.1)
            elif isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        self.features.weight.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tail(self.layer4(self.layer3(self.layer2(self.layer1(self.forward_stem(x))))))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1-BN-PReLU: the fixed part before the blocks (a supernet compiles it apart from them)."""
        return self.prelu(self.bn1(self.conv1(x)))

    def forward_tail(self, x: torch.Tensor) -> torch.Tensor:
        """BN2d-Dropout-FC-BN1d: the fixed "E" output after the blocks."""
        return self.features(self.fc(torch.flatten(self.dropout(self.bn2(x)), 1)))


def fixed_ops(ops: list[str]) -> OpFactory:
    """make_op for a child: slot i gets the single operator ops[i]."""

    def make_op(slot: int, cin: int, cout: int, stride: int) -> nn.Module:
        return build_op(ops[slot], cin, cout, stride)

    return make_op


def build_child(arch: Arch, dropout: float = 0.0) -> IResNet:
    """The network an architecture describes, holding only its chosen operators."""
    return IResNet(arch.backbone, fixed_ops(arch.ops), arch.width, arch.input_size, arch.embedding_size,
                   arch.granularity, dropout)
