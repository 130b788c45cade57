"""Measured operator latency per slot on this machine: a hardware-aware cost for the search.

MACs are a poor proxy for speed (a depthwise conv has few MACs but is memory-bound), and the
paper's point is that the best operator depends on the hardware. So we time every candidate
op at every distinct slot shape (median of `repeats` after warm-up), plus the whole baseline
network, and predict a network's time as

    fixed_ms + sum over slots of table[slot][op]

where fixed_ms = baseline network time - its conv3x3 slot times (stem, BN, shortcuts, head).
"""
from __future__ import annotations

import io
import statistics
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json
from facenar.space.arch import Arch, RANGES as ARCH_RANGES
from facenar_runtime import limits
from facenar_runtime.cli import checked_value, number
from facenar.space.networks import build_child, conv_sites
from facenar.space.ops import PAPER_OPS, build_op

BACKENDS = ("torch", "onnxruntime")


def _median_ms(run: Callable[[], object], repeats: int, warmup: int, sync: Callable[[], None]) -> float:
    for _ in range(warmup):
        run()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _runner(module: nn.Module, shape: tuple[int, ...], backend: str, device: str) -> Callable[[], object]:
    """A zero-argument callable running `module` (eval, no grad) on a fixed random input."""
    module = module.eval().to(device)
    x = torch.randn(shape, device=device)
    if backend == "torch":
        def run():
            with torch.inference_mode():
                return module(x)
        return run
    import onnxruntime as ort

    buffer = io.BytesIO()
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but fast and silent
        warnings.simplefilter("ignore")
        torch.onnx.export(module.cpu(), (x.cpu(),), buffer, input_names=["x"], output_names=["y"], dynamo=False)
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    feed = {"x": x.cpu().numpy()}
    return lambda: session.run(None, feed)


def measure_latency(backbone: str, candidates: Sequence[str] = PAPER_OPS, width: float = 1.0,
                    input_size: int = 112, embedding_size: int | None = None, granularity: str = "block",
                    backend: str = "torch", batch: int = 1, repeats: int = 20, warmup: int = 3,
                    device: str = "cpu") -> dict:
    """Time every candidate at every slot; returns the JSON-ready table (see module doc)."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "onnxruntime" and device != "cpu":
        raise UserError("the onnxruntime backend measures on the CPU; drop --device")
    base = Arch.baseline(backbone, candidates=candidates, width=width, input_size=input_size,
                         embedding_size=embedding_size, granularity=granularity)
    # the measured device's queue (torch.cuda.synchronize() alone waits for the current device, not cuda:1)
    sync = (lambda: torch.cuda.synchronize(device)) if str(device).startswith("cuda") else (lambda: None)
    timed = sorted(set(candidates) | {"conv3x3"})
    cache: dict[tuple, float] = {}
    slots: dict[str, dict[str, float]] = {}
    for site in conv_sites(backbone, width, input_size, granularity):
        row = slots.setdefault(str(site.slot), dict.fromkeys(timed, 0.0))
        for name in timed:
            key = (name, site.cin, site.cout, site.stride, site.in_size)
            if key not in cache:
                op = build_op(name, site.cin, site.cout, site.stride)
                shape = (batch, site.cin, site.in_size, site.in_size)
                cache[key] = _median_ms(_runner(op, shape, backend, device), repeats, warmup, sync)
            row[name] += cache[key]
    network = _runner(build_child(base), (batch, 3, input_size, input_size), backend, device)
    baseline_ms = _median_ms(network, repeats, warmup, sync)
    conv_total = sum(row["conv3x3"] for row in slots.values())
    return {"backbone": backbone, "width": width, "input_size": input_size, "embedding_size": base.embedding_size,
            "granularity": granularity, "candidates": list(candidates), "backend": backend,
            "device": str(device), "batch": batch, "repeats": repeats, "threads": torch.get_num_threads(),
            "baseline_ms": baseline_ms, "fixed_ms": max(0.0, baseline_ms - conv_total),
            "slots": {slot: {name: row[name] for name in candidates} for slot, row in slots.items()}}


def latency_cost(table: dict, codes: Sequence[int] | Arch) -> float:
    """Predicted network time (ms) from a latency table; `codes` index table["candidates"],
    or pass an Arch (its op names are looked up, so its candidate order may differ)."""
    slots = table["slots"]
    if isinstance(codes, Arch):
        space = (codes.backbone, codes.granularity, codes.width, codes.input_size)
        measured = (table["backbone"], table["granularity"], table["width"], table["input_size"])
        if space != measured:
            raise ValueError(f"latency table was measured for {measured}, the architecture is {space}")
        ops = codes.ops
    else:
        ops = [table["candidates"][c] for c in codes]
    if len(ops) != len(slots):
        raise ValueError(f"latency table has {len(slots)} slots, got {len(ops)} codes")
    missing = sorted(set(ops) - set(table["candidates"]))
    if missing:
        raise ValueError(f"latency table has no timings for {missing}")
    return table["fixed_ms"] + sum(slots[str(i)][op] for i, op in enumerate(ops))


def load_latency_table(path: str | Path) -> dict:
    """A table written by `python -m facenar.arch latency --out`, checked for the fields we use."""
    table = read_json(path, "latency table", "write one with python -m facenar.arch latency --out")
    needed = ("backbone", "granularity", "width", "input_size", "candidates", "fixed_ms", "slots")
    missing = [k for k in needed if not isinstance(table, dict) or k not in table]
    if missing:
        raise UserError(f"{path} is not a facenar latency table (missing {', '.join(missing)})")
    try:
        _check_table(table)
    except UserError as exc:
        raise UserError(f"{path}: {exc}; measure it again with python -m facenar.arch latency --out") from None
    return table


def _check_table(table: dict) -> None:
    """Types and timings of a (possibly hand-edited) table: a NaN or negative timing would make the cost
    target silently never act, a wrong type fail deep inside the search."""
    for name in ("backbone", "granularity"):
        if not isinstance(table[name], str):
            raise UserError(f"{name} must be a string, got {table[name]!r}"[:200])
    checked_value(ARCH_RANGES["width"], table["width"], "width")
    checked_value(ARCH_RANGES["input_size"], table["input_size"], "input_size")
    candidates, slots = table["candidates"], table["slots"]
    if not (isinstance(candidates, list) and candidates and all(isinstance(c, str) for c in candidates)
            and len(set(candidates)) == len(candidates)):
        raise UserError(f"candidates must be a list of distinct operator names, got {candidates!r}"[:200])
    timing = number(float, min=0, max=limits.MILLISECONDS)
    checked_value(timing, table["fixed_ms"], "fixed_ms")
    if not isinstance(slots, dict) or sorted(slots, key=str) != sorted(map(str, range(len(slots))), key=str):
        raise UserError("slots must be an object with keys \"0\", \"1\", ... (one per slot)")
    for slot, row in slots.items():
        if not isinstance(row, dict) or set(candidates) - set(row):
            raise UserError(f"slot {slot} must hold a timing for each of {', '.join(candidates)}")
        for op in candidates:
            checked_value(timing, row[op], f"slot {slot} {op} (ms)")


def format_latency(table: dict) -> str:
    names = table["candidates"]
    lines = [f"{table['backbone']} width {table['width']} input {table['input_size']} batch {table['batch']} "
             f"({table['backend']} on {table['device']}, {table['threads']} threads, median of "
             f"{table['repeats']}), ms per slot:",
             f"{'slot':>4} " + " ".join(f"{n:>10}" for n in names)]
    for slot, row in table["slots"].items():
        lines.append(f"{slot:>4} " + " ".join(f"{row[n]:>10.3f}" for n in names))
    lines.append(f"baseline network {table['baseline_ms']:.2f} ms, of which outside the slots "
                 f"{table['fixed_ms']:.2f} ms")
    return "\n".join(lines)
