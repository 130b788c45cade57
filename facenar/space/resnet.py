"""torchvision's ResNet-18 with a pluggable operator at every 3x3-conv site (the paper's Tables 4-5).

It mirrors facenar.space.iresnet (iresnet) so the supernet / child / cost machinery works unchanged:
`block_specs` and `conv_sites` list the same BlockSpec / ConvSite records, and `ResNet(backbone,
make_op, ...)` calls `make_op(slot, cin, cout, stride)` once per site, so putting an OpChoice at
each site gives the supernet and putting one op per site gives a child. Module names follow
torchvision (`conv1, bn1, relu, maxpool, layer1..4`, blocks `conv1, bn1, conv2, bn2, downsample`),
so an all-conv3x3 child's state_dict has exactly torchvision's keys and shapes (minus `fc`, which
belongs to the task's head). Unlike iresnet, the stride sits on a block's first conv.

Two stems: "imagenet" (7x7/2 conv, BN, ReLU, 3x3/2 max pool) and "cifar" (3x3/1 conv, BN, ReLU,
no pool, the usual CIFAR variant); by default inputs of at most 64 px get the cifar stem.
"""
from __future__ import annotations

import torch
from torch import nn

from facenar.space.arch import BACKBONES, GRANULARITIES, STAGE_WIDTHS, family, feature_size, num_slots, scale_channels
from facenar.space.counting import CostReport, count_macs, count_params
from facenar.space.iresnet import BN_EPS, BlockSpec, ConvSite, OpFactory, add_stages, fixed_ops
from facenar.space.ops import PAPER_OPS

STEMS = ("imagenet", "cifar")
CIFAR_STEM_MAX_SIZE = 64


def choose_stem(input_size: int, stem: str | None = None) -> str:
    """The explicit stem, else "cifar" for inputs of at most 64 px and "imagenet" above."""
    if stem is None:
        return "cifar" if input_size <= CIFAR_STEM_MAX_SIZE else "imagenet"
    if stem not in STEMS:
        raise ValueError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    return stem


def stem_output_size(input_size: int, stem: str | None = None) -> int:
    """Spatial size entering layer1: /4 after the imagenet stem (conv /2, pool /2), unchanged for cifar."""
    if choose_stem(input_size, stem) == "cifar":
        return input_size
    conv = (input_size + 2 * 3 - 7) // 2 + 1
    return (conv + 2 * 1 - 3) // 2 + 1


def block_specs(backbone: str = "resnet18", width: float = 1.0, input_size: int = 224,
                stem: str | None = None) -> list[BlockSpec]:
    if family(backbone) != "resnet":
        known = ", ".join(name for name in BACKBONES if family(name) == "resnet")
        raise ValueError(f"{backbone} is not a ResNet; known: {known}")
    specs, size = [], stem_output_size(input_size, stem)
    cin = scale_channels(STAGE_WIDTHS[0], width)
    for stage, (blocks, base) in enumerate(zip(BACKBONES[backbone], STAGE_WIDTHS)):
        cout = scale_channels(base, width)
        for index in range(blocks):
            stride = 2 if index == 0 and stage > 0 else 1  # layer1 keeps the stem's resolution
            out = (size - 1) // stride + 1  # 3x3 kernel, padding 1
            specs.append(BlockSpec(stage, index, cin, cout, stride, size, out))
            cin, size = cout, out
    return specs


def conv_sites(backbone: str = "resnet18", width: float = 1.0, input_size: int = 224,
               granularity: str = "block", stem: str | None = None) -> list[ConvSite]:
    """Both 3x3 convs of every BasicBlock, in network order, with the slot that controls each."""
    per_block = GRANULARITIES[granularity]
    sites = []
    for number, spec in enumerate(block_specs(backbone, width, input_size, stem)):
        prefix = f"layer{spec.stage + 1}.{spec.index}"
        first, second = (number, number) if per_block == 1 else (2 * number, 2 * number + 1)
        sites.append(ConvSite(first, spec.stage, f"{prefix}.conv1", spec.cin, spec.cout, spec.stride,
                              spec.in_size))
        sites.append(ConvSite(second, spec.stage, f"{prefix}.conv2", spec.cout, spec.cout, 1, spec.out_size))
    return sites


class BasicBlock(nn.Module):
    """op1(stride) - BN - ReLU - op2 - BN, plus identity or conv1x1(stride)+BN shortcut, ReLU after the add."""

    def __init__(self, cin: int, cout: int, stride: int, conv1: nn.Module, conv2: nn.Module):
        super().__init__()
        self.conv1 = conv1
        self.bn1 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv2
        self.bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(cout, eps=BN_EPS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class ResNet(nn.Module):
    """Stem, four stages of BasicBlocks, global average pool -> feature vector (no classifier).

    `embedding_size` is the feature length and must equal `feature_size(width)`; it is taken so
    the constructor has iresnet's signature. `dropout` acts on the pooled feature (0 = torchvision).
    """

    def __init__(self, backbone: str, make_op: OpFactory, width: float = 1.0, input_size: int = 224,
                 embedding_size: int | None = None, granularity: str = "block", dropout: float = 0.0,
                 stem: str | None = None):
        super().__init__()
        features = feature_size(width)
        if embedding_size not in (None, features):
            raise ValueError(f"{backbone} at width {width} has a {features}-long feature vector; "
                             f"embedding_size must be {features}, got {embedding_size}")
        self.backbone, self.width, self.input_size = backbone, width, input_size
        self.embedding_size, self.granularity = features, granularity
        self.stem = choose_stem(input_size, stem)
        specs = block_specs(backbone, width, input_size, self.stem)
        self.sites = conv_sites(backbone, width, input_size, granularity, self.stem)
        channels = specs[0].cin
        if self.stem == "imagenet":
            self.conv1 = nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=BN_EPS)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if self.stem == "imagenet" else nn.Identity()
        add_stages(self, specs, self.sites, make_op, BasicBlock)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self._init_like_torchvision()

    def _init_like_torchvision(self) -> None:
        """torchvision: kaiming normal (fan_out, relu) convs, BN gamma 1 / beta 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_tail(self.layer4(self.layer3(self.layer2(self.layer1(self.forward_stem(x))))))

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1-BN-ReLU(-maxpool): the fixed part before the blocks (a supernet compiles it apart from them)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_tail(self, x: torch.Tensor) -> torch.Tensor:
        """Global average pool and dropout: the fixed part after the blocks."""
        return self.dropout(torch.flatten(self.avgpool(x), 1))


def build_child(arch, dropout: float = 0.0, stem: str | None = None) -> ResNet:
    """The network an architecture (anything with Arch's fields) describes, holding only its chosen ops."""
    return ResNet(arch.backbone, fixed_ops(arch.ops), arch.width, arch.input_size, arch.embedding_size,
                  arch.granularity, dropout, stem)


# FLOP-counting conventions for comparing with published figures. "torch" is facenar.space.cost's own
# (FlopCounterMode: every conv incl. stem and 1x1 shortcuts, plus the classifier; BN, ReLU, adds
# and pooling count zero); the others drop a part or add pooling windows (one op per window element).
CONVENTIONS: dict[str, frozenset[str]] = {
    "torch": frozenset(),
    "no_fc": frozenset({"-fc"}),
    "no_downsample": frozenset({"-downsample"}),
    "no_stem": frozenset({"-stem"}),
    "blocks_only": frozenset({"-fc", "-downsample", "-stem"}),
    "with_pooling": frozenset({"+pooling"}),
}


def _pooling_ops(model: ResNet, input_size: int) -> int:
    """Window elements visited by every pooling layer (max/avg ops and the global average)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.AdaptiveAvgPool2d):
            total += inputs[0].numel()
        else:
            total += output.numel() * module.kernel_size ** 2

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d))]
    with torch.device("meta"):
        model.eval()(torch.empty(1, 3, input_size, input_size))
    for handle in handles:
        handle.remove()
    return total


def resnet_cost(codes, granularity: str = "block", input_size: int = 224, num_classes: int = 1000,
                convention: str = "torch", width: float = 1.0, candidates=None, stem: str | None = None,
                backbone: str = "resnet18"):
    """Parameters and multiply-adds (a facenar.space.counting.CostReport) of a ResNet child plus a
    Linear(feature -> num_classes) classifier (none if num_classes is 0), counted on the meta device.
    Parameters always include BN and the classifier; `convention` only changes the MAC count.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; known: {', '.join(CONVENTIONS)}")
    candidates = list(PAPER_OPS if candidates is None else candidates)
    if len(codes) != num_slots(backbone, granularity):
        raise ValueError(f"{backbone} with {granularity} granularity has {num_slots(backbone, granularity)} "
                         f"slots, got {len(codes)} codes")
    if any(not 0 <= code < len(candidates) for code in codes):
        raise ValueError(f"operator codes must be in 0..{len(candidates) - 1}, got {list(codes)}")
    ops = [candidates[code] for code in codes]
    with torch.device("meta"):
        model = ResNet(backbone, fixed_ops(ops), width, input_size, None, granularity, stem=stem)
        head = nn.Linear(model.embedding_size, num_classes) if num_classes else nn.Identity()
    macs = count_macs(nn.Sequential(model, head), (1, 3, input_size, input_size))
    rules = CONVENTIONS[convention]
    if "-fc" in rules:
        macs -= count_macs(head, (1, model.embedding_size))
    if "-stem" in rules:
        macs -= count_macs(model.conv1, (1, 3, input_size, input_size))
    if "-downsample" in rules:
        specs = block_specs(backbone, width, input_size, model.stem)
        for spec in specs:
            block = getattr(model, f"layer{spec.stage + 1}")[spec.index]
            if block.downsample is not None:
                macs -= count_macs(block.downsample, (1, spec.cin, spec.in_size, spec.in_size))
    if "+pooling" in rules:
        macs += _pooling_ops(model, input_size)
    return CostReport(count_params(model) + count_params(head), macs)
