"""Architectures of the search space: which operator each slot of a backbone uses, as JSON.

An architecture is what the search produces and what train/verify/export consume, so it is
validated strictly on load (a typo in a hand-edited file must not silently train the wrong net).
The ground floor of facenar: it imports nothing from the package but the operator names
(its CLI, `python -m facenar.arch`, lives in facenar/arch.py).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence
from pathlib import Path

from facenar_runtime.atomic import write_text_atomic
from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json
from facenar.space.ops import PAPER_OPS, space_ops
from facenar_runtime import limits
from facenar_runtime.cli import checked_value, number

# Blocks per stage: IR blocks (insightface iresnet) or BasicBlocks (He et al.'s ResNet, torchvision);
# stage widths are 64/128/256/512 times `width`. The 10-layer members (one block per stage) are each
# family's next shallower network below its 18-layer one: the hand-made alternative the search evidence
# trains against a pick from an 18-layer space.
BACKBONES: dict[str, tuple[int, int, int, int]] = {
    "iresnet10": (1, 1, 1, 1),
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
    "resnet10": (1, 1, 1, 1),
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}
FAMILIES = ("iresnet", "resnet")  # facenar.space.iresnet / facenar.space.resnet build them
STAGE_WIDTHS = (64, 128, 256, 512)
# "block": one slot per IR block (its op replaces both 3x3 convs); "conv": one slot per 3x3 conv.
GRANULARITIES = {"block": 1, "conv": 2}
# The numeric fields' ranges, shared by the JSON file and every command's --width/--input-size/--embedding-size.
RANGES = {"width": number(float, gt=0, max=limits.WIDTH), "input_size": number(int, min=1, max=limits.INPUT_SIDE),
          "embedding_size": number(int, min=1, max=limits.EMBEDDING)}
FIELDS = ("backbone", "ops", "codes", "candidates", "width", "input_size", "embedding_size",
          "granularity", "provenance")


def family(backbone: str) -> str:
    """Which network family builds `backbone` ("iresnet" or "resnet")."""
    if backbone not in BACKBONES:
        raise UserError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
    return next(name for name in FAMILIES if backbone.rstrip("0123456789") == name)


def shallower(backbone: str) -> str:
    """The next shallower member of the backbone's family (fewest blocks first): iresnet34 for iresnet50,
    iresnet10 for iresnet18; an error below the smallest."""
    members = sorted((name for name in BACKBONES if family(name) == family(backbone)), key=lambda n: sum(BACKBONES[n]))
    index = members.index(backbone)
    if index == 0:
        raise UserError(f"{backbone} is the shallowest {family(backbone)} facenar knows")
    return members[index - 1]


def scale_channels(channels: int, width: float) -> int:
    """Width-scaled channel count, rounded to a multiple of 8 (at least 8) for efficient kernels."""
    return max(8, int(round(channels * width / 8)) * 8)


def feature_size(width: float = 1.0) -> int:
    """Length of a ResNet's pooled feature vector (512 at width 1): it has no embedding layer."""
    return scale_channels(STAGE_WIDTHS[-1], width)


def num_slots(backbone: str, granularity: str = "block") -> int:
    family(backbone)  # names the known backbones when it is unknown
    if granularity not in GRANULARITIES:
        raise UserError(f"unknown granularity {granularity!r}; choose 'block' or 'conv'")
    return sum(BACKBONES[backbone]) * GRANULARITIES[granularity]


def check_json_object(data, fields, what: str) -> None:
    """A hand-edited file: an object holding only known fields (a typo must not be silently ignored)."""
    if not isinstance(data, dict):
        raise UserError(f"an {what} must be a JSON object")
    extra = sorted(set(data) - set(fields))
    if extra:
        raise UserError(f"unknown {what} field(s) {extra}; allowed: {', '.join(fields)}")


@dataclass
class Arch:
    """One point of the search space: `codes[i]` indexes `candidates` for slot i."""

    backbone: str
    codes: list[int]
    candidates: list[str] = field(default_factory=lambda: list(PAPER_OPS))
    width: float = 1.0
    input_size: int = 112
    embedding_size: int | None = None  # None: 512 for an iresnet, the pooled feature size for a ResNet
    granularity: str = "block"
    provenance: dict = field(default_factory=dict)

    def __post_init__(self):
        self.codes = list(self.codes)
        self.candidates = list(self.candidates)
        self._check_types()
        if self.embedding_size is None:
            resnet = self.backbone in BACKBONES and family(self.backbone) == "resnet"
            self.embedding_size = feature_size(self.width) if resnet else 512
        self._validate()

    def _check_types(self) -> None:
        """Hand-edited JSON: a list or object where a name or number belongs is a user error."""
        for name in ("backbone", "granularity"):
            if not isinstance(getattr(self, name), str):
                raise UserError(f"{name} must be a string, got {getattr(self, name)!r}"[:200])
        checked_value(RANGES["width"], self.width, "width")

    def _validate(self) -> None:
        expected = num_slots(self.backbone, self.granularity)
        unknown = [c for c in self.candidates if c not in space_ops("nar")]
        if unknown or not self.candidates:
            raise UserError(f"unknown operator(s) {unknown} in candidates; known: {', '.join(space_ops('nar'))}")
        if len(set(self.candidates)) != len(self.candidates):
            raise UserError(f"candidates list repeats an operator: {self.candidates}")
        if len(self.codes) != expected:
            raise UserError(f"{self.backbone} with {self.granularity} granularity has {expected} slots, "
                            f"got {len(self.codes)} codes")
        bad = [c for c in self.codes if isinstance(c, bool) or not isinstance(c, int)
               or not 0 <= c < len(self.candidates)]
        if bad:
            raise UserError(f"operator codes must be integers in 0..{len(self.candidates) - 1}; got {bad[:5]}")
        for name in ("input_size", "embedding_size"):
            checked_value(RANGES[name], getattr(self, name), name)
        if family(self.backbone) == "resnet" and self.embedding_size != feature_size(self.width):
            raise UserError(f"{self.backbone} at width {self.width} ends in its {feature_size(self.width)}-long "
                            f"pooled feature (no embedding layer): embedding_size must be "
                            f"{feature_size(self.width)}, got {self.embedding_size}")
        if not isinstance(self.provenance, dict):
            raise UserError("provenance must be a JSON object")

    @property
    def ops(self) -> list[str]:
        return [self.candidates[c] for c in self.codes]

    @property
    def num_slots(self) -> int:
        return len(self.codes)

    @classmethod
    def baseline(cls, backbone: str, **kw) -> "Arch":
        """The hand-made network: every slot keeps its 3x3 conv."""
        candidates = list(kw.pop("candidates", PAPER_OPS))
        if "conv3x3" not in candidates:
            raise UserError("the baseline needs 'conv3x3' among the candidates")
        slots = num_slots(backbone, kw.get("granularity", "block"))
        return cls(backbone, [candidates.index("conv3x3")] * slots, candidates, **kw)

    def with_codes(self, codes: Sequence[int], provenance: dict | None = None) -> "Arch":
        """Same space (backbone, size, candidates), other operators."""
        return Arch(self.backbone, list(codes), self.candidates, self.width, self.input_size,
                    self.embedding_size, self.granularity, dict(provenance or {}))

    def to_dict(self) -> dict:
        return {"backbone": self.backbone, "ops": self.ops, "codes": list(self.codes),
                "candidates": list(self.candidates), "width": self.width, "input_size": self.input_size,
                "embedding_size": self.embedding_size, "granularity": self.granularity,
                "provenance": dict(self.provenance)}

    @classmethod
    def from_dict(cls, data: dict) -> "Arch":
        """Parse a dict from JSON or a checkpoint; `ops` alone, `codes` alone, or both (must agree)."""
        check_json_object(data, FIELDS, "architecture")
        if "backbone" not in data:
            raise UserError("architecture has no 'backbone'")
        candidates = data.get("candidates", list(PAPER_OPS))
        if not isinstance(candidates, list) or not all(isinstance(c, str) for c in candidates):
            raise UserError("'candidates' must be a list of operator names")
        ops, codes = data.get("ops"), data.get("codes")
        if ops is None and codes is None:
            raise UserError("architecture needs 'ops' or 'codes'")
        if codes is not None and not isinstance(codes, list):
            raise UserError("'codes' must be a list of integers")
        if ops is not None:
            if not isinstance(ops, list) or not all(isinstance(o, str) for o in ops):
                raise UserError("'ops' must be a list of operator names")
            missing = sorted({o for o in ops if o not in candidates})
            if missing:
                raise UserError(f"operator(s) {missing} are not among the candidates {candidates}")
            from_ops = [candidates.index(o) for o in ops]
            if codes is not None and codes != from_ops:
                raise UserError("'ops' and 'codes' disagree")
            codes = from_ops
        kw = {k: data[k] for k in ("width", "input_size", "embedding_size", "granularity", "provenance")
              if k in data}
        return cls(data["backbone"], codes, candidates, **kw)

    @classmethod
    def load(cls, path: str | Path) -> "Arch":
        path = Path(path)
        data = read_json(path, "architecture file")
        try:
            return cls.from_dict(data)
        except UserError as exc:
            raise UserError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Atomic write (replaces `path`; CLIs check --force before calling)."""
        write_text_atomic(path, dumps(self.to_dict()))


def dumps(data: dict) -> str:
    """JSON with one line per field (the op and code lists stay readable on one line each)."""
    fields = [f"  {json.dumps(key)}: " + json.dumps(value, indent=2).replace("\n", "\n  ")
              if isinstance(value, dict) else f"  {json.dumps(key)}: {json.dumps(value)}"
              for key, value in data.items()]
    return "{\n" + ",\n".join(fields) + "\n}\n"


def parse_codes(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace("[", "").replace("]", "").split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--codes must be comma-separated integers, got {text!r}") from None


def parse_ops(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
