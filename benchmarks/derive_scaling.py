"""Derivation on 2 processes against 1: each distinct candidate scored once, on one rank.

The same supernet (seeded alike on every rank) scores the same random architectures on the whole
proxy-val split of a demo proxy, once on one process and once on two gloo processes (one thread
each, so the two runs use one and two cores), through facenar.dist.shard_and_gather as the
search's derive() does. Reported: seconds, the speed-up, and whether both give the same scores.

    python -m benchmarks.derive_scaling [--quick]
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from benchmarks.common import Section, benchmark_main, machine_info
from facenar_runtime.cli import run_cli
from facenar.dist import DistContext

COLUMNS = ["processes", "candidates", "seconds", "candidates_per_s", "speedup"]
SPACE = dict(backbone="iresnet18", width=0.125, input_size=32, embedding_size=32, scale=16.0, m2=0.1)


def _score(rank: int, world: int, folder: str, proxy: str, count: int) -> None:
    from facenar.rundir import RunDir
    from facenar.search.config import SearchConfig
    from facenar.search.engine import SearchEngine

    torch.set_num_threads(1)
    if world > 1:
        torch_dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous{world}", rank=rank,
                                      world_size=world)
    ctx = DistContext(rank, world, rank, torch.device("cpu"))
    engine = SearchEngine(SearchConfig(**SPACE, data=proxy).validate(), RunDir(Path(folder) / "run"), ctx)
    candidates = engine.space.random_codes(count, torch.Generator().manual_seed(0))
    engine.rewards.accuracy_full(candidates[0])  # warm-up: proxy-val decoded, first-use costs paid
    if world > 1:
        torch_dist.barrier()
    started = time.perf_counter()
    scores = engine._score_shared(candidates)
    seconds = time.perf_counter() - started
    if rank == 0:
        torch.save({"seconds": seconds, "scores": list(scores.values()), "distinct": len(scores)},
                   f"{folder}/result{world}.pt")
    if world > 1:
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def run(quick: bool = False) -> tuple[list[dict], bool]:
    from data_tools.demo import make_demo
    from data_tools.proxy import build_proxy
    from facenar.rundir import RunDir
    from facenar.search.config import SearchConfig

    count = 8 if quick else 24
    with tempfile.TemporaryDirectory(prefix="facenar-derive-bench-") as tmp:
        make_demo(Path(tmp) / "demo", num_ids=40, images_per_id=12, pairs_per_bench=10, seed=0)
        proxy = Path(tmp) / "proxy"
        build_proxy(Path(tmp) / "demo", proxy, num_ids=40, per_id=12, val_per_id=6, seed=0)
        RunDir.create(Path(tmp) / "run", SearchConfig(**SPACE, data=str(proxy)).to_dict())
        results = {}
        for world in (1, 2):
            mp.spawn(_score, args=(world, tmp, str(proxy), count), nprocs=world, join=True)
            results[world] = torch.load(f"{tmp}/result{world}.pt", weights_only=True)
    base = results[1]["seconds"]
    rows = [{"processes": world, "candidates": got["distinct"], "seconds": round(got["seconds"], 2),
             "candidates_per_s": round(got["distinct"] / got["seconds"], 2),
             "speedup": round(base / got["seconds"], 2)} for world, got in results.items()]
    return rows, results[1]["scores"] == results[2]["scores"]


def section(measured: tuple[list[dict], bool], quick: bool) -> Section:
    rows, same = measured
    result = Section("Derivation scoring shared out over processes", COLUMNS, rows)
    result.target("2 processes score the candidates faster than 1", rows[1]["speedup"] > 1.0,
                  f"{rows[1]['speedup']}x")
    result.target("the same scores on 1 and 2 processes", same, "identical" if same else "differ")
    result.notes.append("one thread per process; each distinct candidate scored once on one rank, on the whole "
                        "proxy-val split (240 images, 40 identities)" + ("; quick mode: 8 candidates" if quick else ""))
    result.notes.append(", ".join(f"{k}: {v}" for k, v in machine_info().items()))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(argv, "benchmarks.derive_scaling", __doc__,
                          lambda quick, device: section(run(quick), quick), quick_help="8 candidates")


if __name__ == "__main__":
    run_cli(main)
