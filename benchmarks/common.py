"""Measuring on noisy shared machines: interleaved repeats, medians, ratios, markdown tables.

Every figure is reported next to a reference measured in the same run, because absolute times on
these machines move by tens of percent from one minute to the next.
"""
from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Hashable


@dataclass
class Section:
    """One benchmark's result: a table, free-text notes, and targets (met or with the gap stated)."""

    title: str
    columns: list[str]
    rows: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    targets: list[tuple[str, bool, str]] = field(default_factory=list)

    def target(self, description: str, met: bool, detail: str) -> None:
        self.targets.append((description, bool(met), detail))

    def markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        if self.columns:  # a section without columns (e.g. a benchmark that did not run) is notes only
            lines += [markdown_table(self.rows, self.columns), ""]
        for description, met, detail in self.targets:
            lines.append(f"- target {description}: **{'met' if met else 'NOT met'}** ({detail})")
        lines.extend(f"- {note}" for note in self.notes)
        return "\n".join(lines).rstrip() + "\n"


def is_earlier_report(path: str | Path, header: str) -> bool:
    """Whether `path` is a regular file that begins with `header`: an earlier report of a benchmark command,
    which a rerun may replace without --force. Only a regular file is opened: peeking into a FIFO would wait
    for a writer forever."""
    try:
        if not Path(path).is_file():
            return False
        with open(path, "rb") as handle:
            return handle.read(len(header.encode())) == header.encode()
    except OSError:
        return False


def interleaved_times(candidates: dict[Hashable, Callable[[], object]], repeats: int,
                      warmup: int = 1) -> dict[Hashable, list[float]]:
    """Time each candidate `repeats` times, round-robin, so drifts in machine load hit all alike."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[Hashable, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> float:
    """Half the min-max range relative to the median (a robust-enough noise figure for few repeats)."""
    mid = statistics.median(values)
    return (max(values) - min(values)) / (2 * mid) if mid else 0.0


def rate_cells(items: float, seconds: list[float]) -> dict:
    """Throughput cells: median items/s and its relative spread."""
    rates = [items / s for s in seconds]
    return {"per_s": round(median(rates), 1), "spread": f"±{100 * spread(rates):.0f}%"}


def markdown_table(rows: list[dict], columns: list[str]) -> str:
    if not rows:
        return "(no rows)"
    head = "| " + " | ".join(columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_cell(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def machine_info() -> dict:
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            names = [l.split(":", 1)[1].strip() for l in handle if l.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import os

    info = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch threads": torch.get_num_threads(),
        "numpy": numpy.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def print_section(section: Section) -> None:
    print(section.markdown())


def benchmark_main(argv, prog: str, doc: str, measure: Callable[[bool, str], Section], quick_help: str,
                   with_device: bool = False) -> int:
    """The command line every benchmark module shares: --quick (and --device), then one printed table."""
    import argparse

    from facenar.dist import device_option

    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help=quick_help)
    if with_device:
        parser.add_argument("--device", default="cpu", type=device_option, choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    device = getattr(args, "device", "cpu")
    print_section(measure(args.quick, device))
    return 0
