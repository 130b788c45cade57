"""ENAS's macro search space (Pham et al. 2018): per layer one of six ops plus skips to ALL earlier nodes.

Nodes: node 0 is the stem (conv3x3-BN), node k+1 the output of layer k. Layer k runs its op on
node k and, for k >= 1, adds the nodes j < k whose skip bit is set, then applies BN:
    node[k+1] = BN_k(op_k(node[k]) + sum_{j<k, skip[k][j]=1} node[j])
which is ENAS's search-time layer (the official general_child `_enas_layer`: sum, then BN). The
channel count stays constant, as in ENAS's search network. After layers L//3-1 and 2L//3-1 every
node still needed later goes through its own factorized reduction (stride 2, no information lost
to striding), as ENAS does at its pool layers. Global average pooling then gives the features;
with num_classes > 0, dropout and a linear classifier give the logits (ENAS's head).

Flat codes (what the controller samples and `MacroSupernet.forward` takes) are ENAS's arc
format: per layer k, [op code, skip bit to node 0, ..., skip bit to node k-1], layer after layer,
so L layers give L + L(L-1)/2 integers.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facenar_runtime.atomic import write_text_atomic
from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json
from facenar_runtime import limits
from facenar_runtime.cli import checked_value, number
from facenar.space.arch import check_json_object, dumps
from facenar.space.counting import count_macs, count_params
from facenar.space.ops import build_enas_op

# the space's candidates (operators of facenar.space.ops) in ENAS's branch order (general_child: conv3,
# sep3, conv5, sep5, avg, max); codes index this
ENAS_CANDIDATES = ("conv3x3", "sepconv3x3", "conv5x5", "sepconv5x5", "avgpool3x3", "maxpool3x3")
SPACE = "enas_macro"
FIELDS = ("space", "ops", "skips", "codes", "channels", "input_size", "num_classes", "provenance")


class FactorizedReduction(nn.Module):
    """Halve H and W: two 1x1 convs (C -> C/2) on the even and the one-pixel-shifted grid, concat, BN."""

    def __init__(self, channels: int):
        super().__init__()
        self.path1 = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.path2 = nn.Conv2d(channels, channels - channels // 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = F.pad(x, (0, 1, 0, 1))[:, :, 1::2, 1::2]
        return self.bn(torch.cat([self.path1(x[:, :, ::2, ::2]), self.path2(shifted)], dim=1))


def pool_layers(num_layers: int) -> list[int]:
    """Layers after which ENAS reduces: L//3-1 and 2L//3-1 (none that would follow the last layer)."""
    third = num_layers // 3
    return sorted({p for p in (third - 1, 2 * third - 1) if 0 <= p < num_layers - 1})


def num_codes(num_layers: int) -> int:
    return num_layers + num_layers * (num_layers - 1) // 2


def split_codes(codes: Sequence[int], num_layers: int,
                num_ops: int = len(ENAS_CANDIDATES)) -> tuple[list[int], list[list[int]]]:
    """Flat ENAS codes -> (op code per layer, skip bits per layer); ValueError on a malformed list."""
    codes = [int(c) for c in codes]
    if len(codes) != num_codes(num_layers):
        raise ValueError(f"{num_layers} layers need {num_codes(num_layers)} codes, got {len(codes)}")
    ops, skips, pos = [], [], 0
    for layer in range(num_layers):
        ops.append(codes[pos])
        skips.append(codes[pos + 1:pos + 1 + layer])
        pos += 1 + layer
    if any(not 0 <= op < num_ops for op in ops):
        raise ValueError(f"op codes must lie in 0..{num_ops - 1}, got {ops}")
    if any(bit not in (0, 1) for row in skips for bit in row):
        raise ValueError("skip bits must be 0 or 1")
    return ops, skips


def join_codes(ops: Sequence[int], skips: Sequence[Sequence[int]]) -> list[int]:
    return [int(c) for op, row in zip(ops, skips) for c in (op, *row)]


def random_codes(num_layers: int, count: int, generator: torch.Generator | None = None) -> list[list[int]]:
    """`count` uniform architectures (ops uniform, each skip a fair coin): PreTrain's sampler."""
    ops = torch.randint(0, len(ENAS_CANDIDATES), (count, num_layers), generator=generator).tolist()
    bits = torch.randint(0, 2, (count, num_codes(num_layers) - num_layers), generator=generator).tolist()
    return [join_codes(row, [flat[k * (k - 1) // 2:k * (k + 1) // 2] for k in range(num_layers)])
            for row, flat in zip(ops, bits)]


def needed_reductions(skips: Sequence[Sequence[int]], num_layers: int) -> set[tuple[int, int]]:
    """(pool layer, node) pairs whose reduced node some later layer reads (as input or skip)."""
    last_read: dict[int, int] = {}
    for layer in range(num_layers):
        last_read[layer] = layer  # node k is layer k's input
        for node, bit in enumerate(skips[layer]):
            if bit:
                last_read[node] = max(last_read.get(node, 0), layer)
    return {(pool, node) for pool in pool_layers(num_layers) for node in range(pool + 2)
            if last_read.get(node, -1) > pool}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class MacroArch:
    """One ENAS macro architecture: `ops[k]` names layer k's op, `skips[k][j]` = 1 links node j to it."""

    ops: list[str]
    skips: list[list[int]]
    channels: int = 36
    input_size: int = 32
    num_classes: int = 10  # 0: the network ends at the pooled features
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self._validate()

    def _validate(self) -> None:
        if not isinstance(self.ops, list) or not self.ops or not all(isinstance(o, str) for o in self.ops):
            raise UserError("'ops' must be a non-empty list of operator names")
        unknown = sorted({o for o in self.ops if o not in ENAS_CANDIDATES})
        if unknown:
            raise UserError(f"unknown macro operator(s) {unknown}; known: {', '.join(ENAS_CANDIDATES)}")
        if not isinstance(self.skips, list) or len(self.skips) != len(self.ops):
            raise UserError(f"'skips' must be a list with one row per layer ({len(self.ops)})")
        for layer, row in enumerate(self.skips):
            if not isinstance(row, list) or len(row) != layer or not all(_is_int(b) and b in (0, 1) for b in row):
                raise UserError(f"skips[{layer}] must be a list of {layer} bits (0 or 1), got {row!r}")
        for name, low, top in (("channels", 2, limits.CHANNELS), ("input_size", 2, limits.INPUT_SIDE),
                               ("num_classes", 0, limits.IDENTITIES)):
            checked_value(number(int, min=low, max=top), getattr(self, name), name)
        if self.channels % 2:
            raise UserError(f"channels must be even (factorized reduction halves them), got {self.channels}")
        if not isinstance(self.provenance, dict):
            raise UserError("provenance must be a JSON object")

    @property
    def num_layers(self) -> int:
        return len(self.ops)

    @property
    def codes(self) -> list[int]:
        return join_codes([ENAS_CANDIDATES.index(o) for o in self.ops], self.skips)

    @property
    def skip_density(self) -> float:
        """Fraction of the L(L-1)/2 possible skips that are on."""
        total = num_codes(self.num_layers) - self.num_layers
        return sum(map(sum, self.skips)) / total if total else 0.0

    @classmethod
    def from_codes(cls, codes: Sequence[int], num_layers: int, **space) -> "MacroArch":
        try:
            ops, skips = split_codes(codes, num_layers)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        return cls([ENAS_CANDIDATES[o] for o in ops], skips, **space)

    def to_dict(self) -> dict:
        return {"space": SPACE, "ops": list(self.ops), "skips": [list(r) for r in self.skips], "codes": self.codes,
                "channels": self.channels, "input_size": self.input_size, "num_classes": self.num_classes,
                "provenance": dict(self.provenance)}

    @classmethod
    def from_dict(cls, data: dict) -> "MacroArch":
        """Parse JSON: `ops` and `skips` are the architecture; `codes`, if present, must agree."""
        check_json_object(data, FIELDS, "macro architecture")
        if data.get("space", SPACE) != SPACE:
            raise UserError(f"'space' must be {SPACE!r}, got {data['space']!r}")
        missing = [k for k in ("ops", "skips") if k not in data]
        if missing:
            raise UserError(f"macro architecture needs {' and '.join(repr(k) for k in missing)}")
        kw = {k: data[k] for k in ("channels", "input_size", "num_classes", "provenance") if k in data}
        arch = cls(data["ops"], data["skips"], **kw)
        if "codes" in data and data["codes"] != arch.codes:
            raise UserError("'codes' disagree with 'ops' and 'skips'; remove 'codes' or fix it")
        return arch

    @classmethod
    def load(cls, path: str | Path) -> "MacroArch":
        data = read_json(path, "macro architecture file")
        try:
            return cls.from_dict(data)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        write_text_atomic(path, dumps(self.to_dict()))


class _MacroNet(nn.Module):
    """Stem, L layers, reductions, pooled head; subclasses say which op module a layer runs."""

    def __init__(self, num_layers: int, channels: int, num_classes: int, dropout: float,
                 layers: list[nn.Module], reductions: Sequence[tuple[int, int]]):
        super().__init__()
        self.num_layers, self.channels, self.num_classes = num_layers, channels, num_classes
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.layers = nn.ModuleList(layers)
        self.skip_bn = nn.ModuleList(nn.BatchNorm2d(channels) for _ in range(num_layers - 1))
        self.reduce = nn.ModuleDict({f"{p}_{n}": FactorizedReduction(channels) for p, n in sorted(reductions)})
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels, num_classes) if num_classes else None

    def _op(self, layer: int, code: int) -> nn.Module:
        raise NotImplementedError

    def _run(self, x: torch.Tensor, ops: Sequence[int], skips: Sequence[Sequence[int]]) -> torch.Tensor:
        needed = needed_reductions(skips, self.num_layers)
        pools = pool_layers(self.num_layers)
        nodes: list[torch.Tensor | None] = [self.stem(x)]
        for layer in range(self.num_layers):
            out = self._op(layer, ops[layer])(nodes[layer])
            if layer > 0:
                for node, bit in enumerate(skips[layer]):
                    if bit:
                        out = out + nodes[node]
                out = self.skip_bn[layer - 1](out)
            nodes.append(out)
            if layer in pools:
                nodes = [self.reduce[f"{layer}_{n}"](t) if (layer, n) in needed else None
                         for n, t in enumerate(nodes)]
        features = nodes[-1].mean(dim=(2, 3))
        return self.fc(self.dropout(features)) if self.fc is not None else features


class MacroSupernet(_MacroNet):
    """Every layer holds all six ops (shared weights, ENAS); forward(images, codes) runs one path."""

    num_ops = len(ENAS_CANDIDATES)

    def __init__(self, num_layers: int, channels: int = 36, num_classes: int = 10, input_size: int = 32,
                 dropout: float = 0.0):
        MacroArch([ENAS_CANDIDATES[0]] * num_layers, [[0] * k for k in range(num_layers)], channels, input_size,
                  num_classes)  # same checks and messages as an architecture file
        self.input_size = input_size
        layers = [nn.ModuleList(build_enas_op(name, channels) for name in ENAS_CANDIDATES) for _ in range(num_layers)]
        every = [(p, n) for p in pool_layers(num_layers) for n in range(p + 2)]
        super().__init__(num_layers, channels, num_classes, dropout, layers, every)

    @property
    def num_slots(self) -> int:
        return num_codes(self.num_layers)

    def _op(self, layer: int, code: int) -> nn.Module:
        return self.layers[layer][code]

    def forward(self, images: torch.Tensor, codes: Sequence[int]) -> torch.Tensor:
        ops, skips = split_codes(codes, self.num_layers)
        return self._run(images, ops, skips)

    def make_arch(self, codes: Sequence[int], provenance: dict | None = None) -> MacroArch:
        return MacroArch.from_codes(codes, self.num_layers, channels=self.channels, input_size=self.input_size,
                                    num_classes=self.num_classes, provenance=dict(provenance or {}))


class MacroChild(_MacroNet):
    """Only the chosen op per layer and only the reductions the skips read: the stand-alone network."""

    def __init__(self, arch: MacroArch, dropout: float = 0.0):
        self.arch = arch
        layers = [build_enas_op(name, arch.channels) for name in arch.ops]
        super().__init__(arch.num_layers, arch.channels, arch.num_classes, dropout, layers,
                         needed_reductions(arch.skips, arch.num_layers))
        self._codes = [ENAS_CANDIDATES.index(o) for o in arch.ops]

    def _op(self, layer: int, code: int) -> nn.Module:
        return self.layers[layer]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self._run(images, self._codes, self.arch.skips)


def child_from_supernet(supernet: MacroSupernet, arch: MacroArch) -> MacroChild:
    """A child for `arch` carrying the supernet's weights: it computes what supernet(x, arch.codes) does."""
    space = (supernet.num_layers, supernet.channels, supernet.num_classes)
    if (arch.num_layers, arch.channels, arch.num_classes) != space:
        raise UserError(f"macro architecture (layers, channels, classes) = "
                        f"{(arch.num_layers, arch.channels, arch.num_classes)} does not match the supernet {space}")
    source = supernet.state_dict()
    child = MacroChild(arch, dropout=supernet.dropout.p)
    state = {}
    for key in child.state_dict():
        if key.startswith("layers."):
            _, layer, rest = key.split(".", 2)
            key_in_supernet = f"layers.{layer}.{ENAS_CANDIDATES.index(arch.ops[int(layer)])}.{rest}"
        else:
            key_in_supernet = key
        state[key] = source[key_in_supernet]
    child.to(device=next(iter(source.values())).device).load_state_dict(state, strict=True)
    return child.train(supernet.training)


def macro_cost(arch: MacroArch) -> dict:
    """Parameters and multiply-adds of the stand-alone child (meta device, facenar.space.cost conventions)."""
    with torch.device("meta"):
        model = MacroChild(arch)
    return {"params": count_params(model), "macs": count_macs(model, (1, 3, arch.input_size, arch.input_size))}
