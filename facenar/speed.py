"""Speed switches shared by training, search, verification and the benchmarks: torch.compile with an
eager fallback, and channels_last memory.

Why a wrapper and not torch.compile alone: the wrapped module stays the one that is checkpointed (no
`_orig_mod.` keys, so eager and compiled runs read each other's checkpoints), and a compile that cannot
happen (no C++ compiler, an inductor error on the first call) costs one warning line and the speed,
never the run. Compiling is lazy in torch, so the first call is where failures show: `attempt` runs it
and falls back to eager, undoing what the failed try left (gradients) first.
"""
from __future__ import annotations

import os
import shutil
import sys
from typing import Callable, TypeVar

import torch
from torch import nn

# --compile values: off, or a torch.compile mode ("default" = torch's default mode)
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# torch 2.13 CPU (oneDNN): the backward of a 1x1 stride-2 conv with fewer input channels than this, on a
# channels_last input, corrupts the heap (double free; reproduced in eager). Inductor's layout optimisation
# makes activations channels_last, so such networks train compiled without it, and never channels_last.
ONEDNN_MIN_CHANNELS = 16
T = TypeVar("T")


def warn(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr, flush=True)


def compiler_problem(device: torch.device) -> str | None:
    """Why inductor cannot build code for `device` here, or None: CPU kernels are C++ built with $CXX
    (default g++), CUDA kernels need triton."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "triton is not installed (torch.compile needs it for CUDA)"
        return None
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        return f"no C++ compiler: {cxx} is not on PATH (install g++ or set CXX)"
    return None


def cpu_backward_hazard(module: nn.Module) -> str | None:
    """The oneDNN channels_last crash (ONEDNN_MIN_CHANNELS) applies to this network's training on CPU."""
    for name, layer in module.named_modules():
        if (isinstance(layer, nn.Conv2d) and layer.kernel_size == (1, 1) and max(layer.stride) > 1
                and layer.in_channels < ONEDNN_MIN_CHANNELS):
            return (f"{name} is a 1x1 stride-{max(layer.stride)} conv with {layer.in_channels} input channels, "
                    f"whose channels_last backward crashes in torch {torch.__version__.split('+')[0]} on CPU")
    return None


def compile_options(mode: str, backend, no_layout_optimization: bool) -> dict:
    """torch.compile keyword arguments for `mode`. Inductor gets its options spelled out (mode and
    options exclude each other), with eager's random numbers (fallback_random: dropout masks as eager
    draws them, so a compiled run agrees with an eager one) and, where asked, without the layout
    optimisation (the oneDNN hazard above)."""
    if backend != "inductor":
        return {}
    from torch._inductor import list_mode_options

    options = {**list_mode_options(mode), "fallback_random": True}
    if no_layout_optimization:
        options["layout_optimization"] = False
    return {"options": options}


class Compiled:
    """A module's forward, through torch.compile unless `mode` is off or compiling cannot work here.

    Call it like the module. `training=True` says gradients will flow (CPU hazard check above).
    `backend` is torch.compile's (tests count graphs with their own)."""

    def __init__(self, module: nn.Module | Callable, mode: str = "default", device: torch.device | str = "cpu",
                 label: str = "model", training: bool = False, backend="inductor"):
        self.eager = self.current = module
        self.label, self.proven = label, True
        if mode == "off":
            return
        device = torch.device(device)
        problem = compiler_problem(device) if backend == "inductor" else None
        hazard = cpu_backward_hazard(module) if training and device.type == "cpu" and isinstance(module, nn.Module) \
            else None
        if problem:
            warn(f"--compile: {problem}; running the {label} eager")
            return
        self.current = torch.compile(module, backend=backend, **compile_options(mode, backend, bool(hazard)))
        self.proven = False

    @property
    def compiled(self) -> bool:
        return self.current is not self.eager

    def __call__(self, *args, **kwargs):
        if self.proven:
            return self.current(*args, **kwargs)
        return self.attempt(lambda: self.current(*args, **kwargs))

    def attempt(self, work: Callable[[], T], undo: Callable[[], None] = lambda: None) -> T:
        """`work()` (which calls this object); until one call has succeeded compiled, a failure switches to
        eager with one warning line, runs `undo()` and tries `work()` once more."""
        if self.proven:
            return work()
        self.proven = True  # a nested __call__ inside work() runs straight through
        try:
            return work()
        except Exception as exc:  # inductor/dynamo raise many types; an eager error raises again below
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            warn(f"--compile: compiling the {self.label} failed ({type(exc).__name__}: {first}); running it eager")
            self.current = self.eager
            undo()
            return work()


def op_compiler(mode: str, device: torch.device | str, count: int, backend="inductor") -> Callable | None:
    """A function compiling one part of a supernet (a block's forward or a candidate op), or None (mode
    off, or compiling cannot work here: then one warning line). Dynamo keeps at most recompile_limit
    graphs per code object before it silently runs eager; a part holds one graph per choice (more than the
    default 8 with ENAS's six ops) and each may get a second, dynamic-shape graph (training batches and
    scoring chunks differ in size), so the limits are raised to twice the `count` graphs to come."""
    if mode == "off":
        return None
    problem = compiler_problem(torch.device(device)) if backend == "inductor" else None
    if problem:
        warn(f"--compile: {problem}; running the supernet eager")
        return None
    config = torch._dynamo.config
    config.recompile_limit = max(config.recompile_limit, 2 * count)
    config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 4 * count)
    kwargs = compile_options(mode, backend, torch.device(device).type == "cpu")
    return lambda module: torch.compile(module, backend=backend, **kwargs)


def to_channels_last(module: nn.Module, device: torch.device | str, training: bool, label: str = "model") -> bool:
    """Put the module's 4-D weights in channels_last memory; False (with a warning) where that is unsafe."""
    hazard = cpu_backward_hazard(module) if training and torch.device(device).type == "cpu" else None
    if hazard:
        warn(f"--channels-last: {hazard}; the {label} keeps the default memory format")
        return False
    module.to(memory_format=torch.channels_last)
    return True


def channels_last_input(x: torch.Tensor, enabled: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if enabled and x.dim() == 4 else x


class Fast(nn.Module):
    """`module` run with the speed options; train()/eval() and state reach it as usual."""

    def __init__(self, module: nn.Module, compile: str = "off", channels_last: bool = False,
                 device: torch.device | str = "cpu", training: bool = False, label: str = "model"):
        super().__init__()
        self.module = module
        self.channels_last = channels_last and to_channels_last(module, device, training, label)
        self.run = Compiled(module, compile, device, label, training)

    def forward(self, x: torch.Tensor, *rest):
        return self.run(channels_last_input(x, self.channels_last), *rest)


def add_speed_options(parser, what: str = "the network") -> None:
    """--compile [MODE] and --channels-last for the inference commands (verify, evaluate)."""
    parser.add_argument("--compile", nargs="?", const="default", default="off", choices=COMPILE_MODES,
                        metavar="MODE", help=f"torch.compile {what} with MODE (alone: default; default off; "
                        f"one of {', '.join(COMPILE_MODES)}); results agree with eager within float tolerance")
    parser.add_argument("--channels-last", action="store_true", help=f"channels_last memory for {what}")
