"""Eager vs torch.compile vs channels_last, for training and inference of the baseline and Ours-2, and
the search supernet compiled per candidate op: the rows benchmarks.networks and benchmarks.gpu_check
print. Compile time is the first call's extra time, measured apart from the timed (interleaved) repeats.
"""
from __future__ import annotations

import copy
import random
import time
from typing import Callable

import torch
from torch import nn

from benchmarks.common import interleaved_times, median, rate_cells
from benchmarks.workloads import calibrated_child, inference_closure, train_step_closure
from facenar.space.arch import Arch
from facenar.space.networks import build_child
from facenar.space.supernet import Supernet
from facenar.speed import Compiled, channels_last_input, cpu_backward_hazard, op_compiler

OURS2_CODES = (0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 2, 1, 0, 1, 0)
# the search preset the supernet rows use (facenar.search --preset demo)
DEMO_SEARCH = dict(backbone="iresnet18", width=0.25, input_size=32, embedding_size=64, batch=64, classes=24)


def _timed_first(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def variants(model: nn.Module, device: str, training: bool) -> dict[str, tuple[Callable, bool, float]]:
    """name -> (forward, channels_last input, compile seconds placeholder): eager, compiled, channels_last.
    channels_last is left out where facenar.speed refuses it (the oneDNN crash it guards against)."""
    out = {"eager": (model, False)}
    out["compiled"] = (Compiled(model, "default", device, "benchmark network", training=training), False)
    if not (training and torch.device(device).type == "cpu" and cpu_backward_hazard(model)):
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        out["channels_last"] = (cl, True)
    return out


def variants_compiled(found: dict) -> bool:
    """Whether the 'compiled' variant still runs compiled (facenar.speed falls back to eager on failure)."""
    return found["compiled"][0].compiled


def _train_closure(forward: Callable, params, batch: int, size: int, classes: int, device: str,
                   channels_last: bool, features: int = 512, wrap_loss: Callable = lambda fn: fn) -> Callable[[], None]:
    return train_step_closure(_Params(params), lambda x: forward(channels_last_input(x, channels_last)), batch, size,
                              classes, device, features, wrap_loss)


class _Params(nn.Module):
    """Hands train_step_closure the parameters to optimise (the forward is given separately)."""

    def __init__(self, params):
        super().__init__()
        self.params = nn.ParameterList(params)


def _infer_closure(forward: Callable, batch: int, size: int, device: str, channels_last: bool):
    return inference_closure(lambda x: forward(channels_last_input(x, channels_last)), batch, size, device)


def network_speed_rows(train: tuple[float, int, int], infer: tuple[float, int, int], classes: int, repeats: int,
                       device: str = "cpu") -> list[dict]:
    """Train and inference images/s of baseline and Ours-2: eager, compiled, channels_last (ratio vs eager).
    `train` and `infer` are (width, input size, batch): inference is only meaningful at deployment size.
    Both networks' variants are timed interleaved in one loop, so Ours-2 vs baseline is a same-moment ratio
    too (timed one network after the other, a drifting machine moved it by 10%)."""
    rows = []
    for measure, training, (width, input_size, batch) in (("train img/s", True, train),
                                                          ("inference img/s", False, infer)):
        base = Arch.baseline("iresnet50", width=width, input_size=input_size)
        archs = {"baseline iresnet50": base, "Ours-2 (paper, refined)": base.with_codes(list(OURS2_CODES))}
        runs, compile_s, fell_back = {}, {}, {}
        for network, arch in archs.items():
            torch.manual_seed(0)
            model = (build_child(arch).train() if training else calibrated_child(arch)).to(device)
            found = variants(model, device, training)
            for name, (forward, cl) in found.items():
                module = forward if isinstance(forward, nn.Module) else model
                run = (_train_closure(forward, list(module.parameters()), batch, input_size, classes, device, cl)
                       if training else _infer_closure(forward, batch, input_size, device, cl))
                runs[network, name] = run
                compile_s[network, name] = _timed_first(run) - _timed_first(run) if name == "compiled" else None
            fell_back[network] = not variants_compiled(found)
        times = interleaved_times(runs, repeats)
        setting = (f"{device}{' bf16 AMP' if device == 'cuda' else ''}, batch {batch}, {input_size}px, width "
                   f"{width}, median of {repeats}, both networks interleaved")
        for (network, name), seconds in times.items():
            shown = f"{name} (compile failed: ran eager)" if name == "compiled" and fell_back[network] else name
            took = compile_s[network, name]
            rows.append({"measure": f"{measure}, {shown}", "network": network, "setting": setting,
                         **rate_cells(batch, seconds), "ratio": median(times[network, "eager"]) / median(seconds),
                         "target": "", "compile_s": round(took, 1) if took else "",
                         "variant": name, "kind": "train" if training else "inference"})
    return rows


def supernet_speed_rows(repeats: int, steps: int = 4, device: str = "cpu") -> list[dict]:
    """Shared-weight training steps of the demo search's supernet on random paths, eager vs compiled per
    block and choice (the search's --compile: Supernet.compile_parts); compile time = one pass over every
    choice, apart."""
    s = DEMO_SEARCH
    torch.manual_seed(0)
    eager = Supernet(s["backbone"], width=s["width"], input_size=s["input_size"],
                     embedding_size=s["embedding_size"]).to(device).train()
    compiled = copy.deepcopy(eager)
    compile_fn = op_compiler("default", device, compiled.compiled_part_count())
    if compile_fn is not None:
        compiled.compile_parts(compile_fn)
    wraps = {"eager": lambda fn: fn, "compiled": compile_fn or (lambda fn: fn)}  # head + loss: one graph, as the search
    rng = random.Random(0)
    paths = [[rng.randrange(eager.num_ops) for _ in range(eager.num_slots)] for _ in range(64)]
    runs, position = {}, {"eager": 0, "compiled": 0}
    for name, net in (("eager", eager), ("compiled", compiled)):
        step = _train_closure(lambda x, net=net, name=name: net(x, paths[position[name] % len(paths)]),
                              list(net.parameters()), s["batch"], s["input_size"], s["classes"], device, False,
                              s["embedding_size"], wraps[name])

        def several(step=step, name=name):
            for _ in range(steps):
                step()
                position[name] += 1
        runs[name] = several
    first = time.perf_counter()
    for code in range(compiled.num_ops):  # every op of every slot: all compiling happens here
        _train_closure(lambda x, c=code: compiled(x, [c] * compiled.num_slots), list(compiled.parameters()),
                       s["batch"], s["input_size"], s["classes"], device, False, s["embedding_size"])()
    compile_s = time.perf_counter() - first
    times = interleaved_times(runs, repeats)
    setting = (f"{device}, demo search preset ({s['backbone']} width {s['width']}, {s['input_size']}px, batch "
               f"{s['batch']}), random path per step, {steps} steps per repeat, median of {repeats}")
    return [{"measure": f"search shared-weight step/s, {name}", "network": "supernet (demo)", "setting": setting,
             **rate_cells(steps, seconds), "ratio": median(times["eager"]) / median(seconds), "target": "",
             "compile_s": round(compile_s, 1) if name == "compiled" else "", "variant": name, "kind": "search"}
            for name, seconds in times.items()]
