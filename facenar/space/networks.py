"""The one place that picks a backbone's network family: iresnet (faces) or ResNet (classification).

Every caller that turns an architecture into a network (training, checkpoints, cost, latency,
supernet, benchmarks) goes through here, so adding a family means adding it here and nowhere else.
Both families share the skeleton contract: `Network(backbone, make_op, width, input_size,
embedding_size, granularity, dropout)` calls `make_op(slot, cin, cout, stride)` once per conv site.
"""
from __future__ import annotations

from torch import nn

from facenar.space import iresnet, resnet
from facenar.space.arch import family
from facenar.space.iresnet import ConvSite

MODULES = {"iresnet": iresnet, "resnet": resnet}


def build_child(arch, dropout: float = 0.0) -> nn.Module:
    """The network an architecture describes, holding only its chosen operators."""
    return MODULES[family(arch.backbone)].build_child(arch, dropout=dropout)


def conv_sites(backbone: str, width: float = 1.0, input_size: int = 112,
               granularity: str = "block") -> list[ConvSite]:
    """Every conv site of the backbone in network order (a ResNet's stem is chosen by input size)."""
    return MODULES[family(backbone)].conv_sites(backbone, width, input_size, granularity)
