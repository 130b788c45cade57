"""GPU check: one command that measures what a CUDA machine gives facenar, in a few minutes.

CUDA training steps of the baseline and Ours-2 at 112 px with bf16 autocast, eager / compiled /
channels_last (images/s, compile time apart, peak memory); the demo search's supernet steps eager vs
compiled per block and choice; verification embedding throughput (facenar.verify's TorchEmbedder);
one-process NCCL initialisation. Written as a "GPU check" section of RESULTS.md and a JSON file naming the GPU.

    python -m benchmarks.gpu_check [--quick] [--json benchmarks/gpu_check.json] [--results benchmarks/RESULTS.md]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from benchmarks.common import Section, machine_info, median
from facenar_runtime import limits
from facenar_runtime.atomic import write_text_atomic
from facenar_runtime.cli import number, run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import check_outputs

HERE = Path(__file__).resolve().parent
TITLE = "GPU check"
COLUMNS = ["step", "network", "variant", "per_s", "unit", "ratio", "compile_s", "peak_gib", "setting"]


def _peak(fn: Callable[[], list[dict]]) -> list[dict]:
    """Rows of fn, each with the peak GPU memory of the whole step."""
    torch.cuda.reset_peak_memory_stats()
    rows = fn()
    peak = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    return [{**row, "peak_gib": peak} for row in rows]


def training_rows(quick: bool) -> list[dict]:
    from benchmarks.speed import network_speed_rows

    rows = network_speed_rows((1.0, 112, 128), (1.0, 112, 256), 10_000, 5 if quick else 10, "cuda")
    return [{"step": r["measure"].split(",")[0].replace(" img/s", ""), "network": r["network"],
             "variant": r["measure"].split(", ", 1)[1],
             "per_s": r["per_s"], "unit": "img/s", "ratio": r["ratio"], "compile_s": r["compile_s"],
             "setting": r["setting"]} for r in rows]


def search_rows(quick: bool) -> list[dict]:
    from benchmarks.speed import supernet_speed_rows

    rows = supernet_speed_rows(3 if quick else 5, steps=20, device="cuda")
    return [{"step": "search (shared-weight steps)", "network": r["network"], "variant": r["variant"],
             "per_s": r["per_s"], "unit": "steps/s", "ratio": r["ratio"], "compile_s": r["compile_s"],
             "setting": r["setting"]} for r in rows]


def embedding_rows(quick: bool) -> list[dict]:
    """facenar.verify's embedder (flip included, as verification runs it) on random face-sized images."""
    from benchmarks.speed import OURS2_CODES, calibrated_child
    from facenar.space.arch import Arch
    from facenar.verify.embed import TorchEmbedder, embed_images

    images = np.random.default_rng(0).integers(0, 256, (1024 if quick else 4096, 112, 112, 3), dtype=np.uint8)
    rows = []
    base = Arch.baseline("iresnet50")
    archs = {"baseline iresnet50": base, "Ours-2 (paper, refined)": base.with_codes(list(OURS2_CODES))}
    for network, arch in archs.items():
        times = {}
        for variant in ("eager", "compiled"):
            embedder = TorchEmbedder(calibrated_child(arch).cuda(), "cuda", 112,
                                     compile="default" if variant == "compiled" else "off")
            start = time.perf_counter()
            embed_images(embedder, images[:256], batch_size=256)  # warm-up (and compile)
            warm = time.perf_counter() - start
            runs = []
            for _ in range(3):
                start = time.perf_counter()
                embed_images(embedder, images, batch_size=256)
                runs.append(time.perf_counter() - start)
            times[variant] = median(runs)
            rows.append({"step": "verification embedding", "network": network, "variant": variant,
                         "per_s": round(2 * len(images) / times[variant], 1), "unit": "img/s (flip counted)",
                         "ratio": times["eager"] / times[variant], "compile_s": round(warm, 1) if variant != "eager"
                         else "", "setting": f"cuda fp32, batch 256, {len(images)} images + flips, median of 3"})
    return rows


def nccl_rows(quick: bool) -> list[dict]:
    """init_process_group('nccl') in one process, one all_reduce, teardown: the first thing DDP does."""
    import torch.distributed as dist

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.perf_counter()
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                            device_id=torch.device("cuda", 0))
    value = torch.ones(1, device="cuda")
    dist.all_reduce(value)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    dist.destroy_process_group()
    return [{"step": "NCCL init (1 process)", "network": "", "variant": "", "per_s": "", "unit": "",
             "ratio": "", "compile_s": "",
             "setting": f"init + one all_reduce: {seconds:.2f} s, result {value.item():g}"}]


STEPS = {"nccl": nccl_rows, "training": training_rows, "embedding": embedding_rows, "search": search_rows}


def measure(quick: bool, budget_s: float) -> dict:
    """Every step on CUDA; a step that fails is reported with its error and the others go on; a step
    not started before `budget_s` is reported as skipped."""
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
              "machine": machine_info(), "quick": quick, "rows": [], "failed": {}, "seconds": {}}
    began = time.perf_counter()
    for name, fn in STEPS.items():
        start = time.perf_counter()
        if start - began > budget_s:
            report["failed"][name] = f"skipped: the {budget_s:.0f} s budget was spent"
            continue
        try:
            report["rows"] += _peak(lambda: fn(quick))
        except Exception as exc:  # a benchmark's failure is a result too; the rest still runs
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            report["failed"][name] = f"{type(exc).__name__}: {first}"
        report["seconds"][name] = round(time.perf_counter() - start, 1)
    return report


def section(report: dict) -> Section:
    result = Section(f"{TITLE}: {report['gpu']}", COLUMNS, report["rows"])
    result.notes.append(f"torch {report['torch']}, CUDA {report['cuda']}; training rows: bf16 autocast; ratio = vs "
                        "eager, same network and step; compile_s excluded from the timed repeats; peak_gib = "
                        "peak GPU memory allocated during that step's measurement")
    for name, error in report["failed"].items():
        result.notes.append(f"{name}: failed ({error})")
    result.notes.append("seconds per step: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    return result


def update_results(path: Path, text: str) -> None:
    """Replace the GPU check section of a results file (or append it), keeping every other section."""
    old = path.read_text(encoding="utf-8") if path.exists() else "# facenar benchmark results\n"
    lines, kept, skipping = old.splitlines(), [], False
    for line in lines:
        if line.startswith("## "):
            skipping = line.startswith(f"## {TITLE}")
        if not skipping:
            kept.append(line)
    write_text_atomic(path, "\n".join(kept).rstrip() + "\n\n" + text)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats and images (about half the time)")
    p.add_argument("--json", default=str(HERE / "gpu_check.json"),
                   help="JSON report (default benchmarks/gpu_check.json)")
    p.add_argument("--results", default=str(HERE / "RESULTS.md"),
                   help="markdown whose GPU check section is replaced (default benchmarks/RESULTS.md)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    p.add_argument("--budget", type=number(float, gt=0, max=limits.MINUTES), default=7.0, metavar="MINUTES",
                   help="start no new step after this many minutes (default 7: done within 8)")
    p.add_argument("--threads", type=number(int, min=1, max=limits.WORKERS), default=None, help="CPU threads for torch (default: torch's)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        raise UserError("benchmarks.gpu_check needs a CUDA GPU, and torch sees none "
                        f"(torch {torch.__version__}; check the driver and CUDA_VISIBLE_DEVICES)")
    check_outputs(args.force, files={"--json": args.json})
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.backends.cudnn.benchmark = True
    os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(os.cpu_count() or 1))
    report = measure(args.quick, 60 * args.budget)
    write_text_atomic(args.json, json.dumps(report, indent=2, default=str) + "\n")
    text = section(report).markdown()
    update_results(Path(args.results), text)
    print(text)
    return 0


if __name__ == "__main__":
    run_cli(main)
