"""The weight-sharing supernet: every conv site holds all candidate ops; a forward takes codes.

It is the backbone family's own skeleton (facenar.space.iresnet or facenar.space.resnet) with an
OpChoice at each site, so stem, BN, activations, shortcuts and the head are shared by every
architecture, and each candidate op's weights are shared by every architecture that picks it at
that slot (ENAS). A child cut out of it (`child_from_supernet`) computes exactly what the supernet
computes for its codes.
"""
from __future__ import annotations

import functools
import types
from typing import Callable, Sequence

import torch
from torch import nn

from facenar_runtime.errors import UserError
from facenar.space.arch import Arch, family, num_slots
from facenar.space.iresnet import IResNet
from facenar.space.networks import build_child
from facenar.space.ops import PAPER_OPS, build_op
from facenar.space.resnet import ResNet


class OpChoice(nn.Module):
    """All candidate ops of one site; runs the one selected by `active` (through `runners`, the
    candidates' compiled forms once Supernet.compile_parts has set them: the choice stays in Python)."""

    def __init__(self, candidates: list[nn.Module]):
        super().__init__()
        self.candidates = nn.ModuleList(candidates)
        self.runners: list[Callable] = list(self.candidates)  # a plain list: not in the state_dict
        self.active = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.runners[self.active](x)


class Supernet(nn.Module):
    """`Supernet(backbone, ...)` builds the family's supernet class below (a subclass of both this
    class and the family's network), so its modules and state_dict keys are the child's plus
    `.candidates.<code>` at each site, for either family."""

    def __new__(cls, *args, **kwargs):
        if cls is Supernet:  # pickling / copying pass the concrete class and no arguments
            backbone = args[0] if args else kwargs["backbone"]
            cls = FAMILY_SUPERNETS[family(backbone)]
        return super().__new__(cls)

    def __init__(self, backbone: str, candidates: Sequence[str] = PAPER_OPS, width: float = 1.0,
                 granularity: str = "block", input_size: int = 112, embedding_size: int | None = None,
                 dropout: float = 0.0):
        self.candidates = list(candidates)
        # validates backbone / candidates / sizes once, with the same messages as an arch file
        space = Arch.baseline(backbone, candidates=self.candidates, width=width, input_size=input_size,
                              embedding_size=embedding_size, granularity=granularity)
        embedding_size = space.embedding_size  # None -> the family's default

        def make_op(slot: int, cin: int, cout: int, stride: int) -> nn.Module:
            return OpChoice([build_op(name, cin, cout, stride) for name in self.candidates])

        super().__init__(backbone, make_op, width, input_size, embedding_size, granularity, dropout)
        self._choices = [(site.slot, self.get_submodule(site.path)) for site in self.sites]

    @property
    def num_slots(self) -> int:
        return num_slots(self.backbone, self.granularity)

    @property
    def num_ops(self) -> int:
        return len(self.candidates)

    def select(self, codes: Sequence[int]) -> None:
        """Route every site to its slot's op (kept until the next select/forward)."""
        if len(codes) != self.num_slots:
            raise ValueError(f"expected {self.num_slots} codes, got {len(codes)}")
        for slot, choice in self._choices:
            code = int(codes[slot])
            if not 0 <= code < self.num_ops:
                raise ValueError(f"code {code} at slot {slot} is outside 0..{self.num_ops - 1}")
            choice.active = code

    def forward(self, x: torch.Tensor, codes: Sequence[int]) -> torch.Tensor:
        self.select(codes)
        return super().forward(x)

    def compile_parts(self, compile_fn: Callable[[Callable], Callable]) -> None:
        """Compile (e.g. torch.compile) what a path is made of, once: the sampled path changes every
        minibatch, so compiling the whole network would recompile for each new path. With one slot per
        block ("block" granularity) each block is compiled with each of its choices (dynamo keeps one graph
        per value of the choice, a Python int), which fuses its BN, PReLU and shortcut around the op:
        measured 1.22x eager per demo search step against 0.95x for ops compiled alone (1.27-1.31x with
        facenar.space.pooling's compiled forms and _compiled_method's own code objects). With one slot per
        conv a block would have num_ops^2 graphs, so each candidate op is compiled alone. The fixed stem
        and tail are one graph each. The module tree and state_dict do not change (_compiled_method)."""
        for name in ("forward_stem", "forward_tail"):
            setattr(self, name, _compiled_method(compile_fn, self, name))
        if self.granularity == "block":
            for block in self._blocks():
                block.forward = _compiled_method(compile_fn, block)
        else:
            for _, choice in self._choices:
                choice.runners = [_compiled_method(compile_fn, op) for op in choice.candidates]

    def compiled_part_count(self) -> int:
        """At most how many graphs compile_parts leads to (every path once; the stem and the tail one each):
        dynamo's recompile limits."""
        parts = len(self._blocks()) if self.granularity == "block" else len(self._choices)
        return parts * self.num_ops + 2

    def _blocks(self) -> list[nn.Module]:
        """The blocks holding the conv sites, in network order."""
        paths = dict.fromkeys(site.path.rsplit(".", 1)[0] for site in self.sites)
        return [self.get_submodule(path) for path in paths]


def _compiled_method(compile_fn: Callable[[Callable], Callable], module: nn.Module, name: str = "forward"):
    """`module.<name>` compiled, bound through a partial (so a deep copy of the module runs its own weights),
    through a caller with a code object of its own. Dynamo keeps its graphs per code object and tries their
    guards in turn on every call, and all blocks share their class's forward (torch's own modules even
    share one wrapper's code): with 8 blocks x 4 choices on one code object a call checked up to 32 graphs'
    guards (0.2-0.3 ms, ~5% of a demo search step). Its own code keeps each part's lookup to its choices."""
    method = getattr(type(module), name)

    def call(self, *args):
        return method(self, *args)

    own = types.FunctionType(call.__code__.replace(), call.__globals__, call.__name__, None, call.__closure__)
    return functools.partial(compile_fn(own), module)


class IResNetSupernet(Supernet, IResNet):
    pass


class ResNetSupernet(Supernet, ResNet):
    pass


FAMILY_SUPERNETS = {"iresnet": IResNetSupernet, "resnet": ResNetSupernet}


def child_from_supernet(supernet: Supernet, arch: Arch) -> nn.Module:
    """A child for `arch` carrying the supernet's shared weights and its chosen ops' weights."""
    space = (supernet.backbone, supernet.width, supernet.input_size, supernet.embedding_size,
             supernet.granularity)
    if (arch.backbone, arch.width, arch.input_size, arch.embedding_size, arch.granularity) != space:
        raise UserError(f"architecture ({arch.backbone}, width {arch.width}, input {arch.input_size}, "
                        f"embedding {arch.embedding_size}, {arch.granularity}) does not match the "
                        f"supernet {space}")
    missing = sorted(set(arch.ops) - set(supernet.candidates))
    if missing:
        raise UserError(f"operator(s) {missing} are not in the supernet's candidates {supernet.candidates}")
    ops = arch.ops
    source = supernet.state_dict()
    state = {key: value for key, value in source.items() if ".candidates." not in key}
    for site in supernet.sites:
        chosen = f"{site.path}.candidates.{supernet.candidates.index(ops[site.slot])}."
        state.update({site.path + "." + key[len(chosen):]: value
                      for key, value in source.items() if key.startswith(chosen)})
    reference = next(iter(source.values()))
    child = build_child(arch, dropout=supernet.dropout.p).to(device=reference.device)
    child.load_state_dict(state, strict=True)
    return child.train(supernet.training)
