"""Verification speed: the vectorised protocol against plain loops, and embedding throughput.

(1) facenar.verify.metrics.evaluate_distances against facenar.verify.metrics_reference.reference_evaluate (the
plain folds x thresholds loops insightface runs, also the tests' oracle) on 6,000 pairs, LFW's
size; both must give the same numbers. (2) images/s of the verification pipeline for a tiny
facenar model: .bin JPEGs decoded once (1 thread vs a thread pool), then embedded with flip
(two forwards per image) at the CLI's default batch size.

    python -m benchmarks.verification [--quick]
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from benchmarks.common import Section, benchmark_main, interleaved_times, machine_info, median, spread
from facenar_runtime.cli import run_cli
from data_tools.demo import identity_images
from facenar.verify import metrics
from facenar.space.arch import Arch
from facenar.space.networks import build_child
from facenar.verify.embed import TorchEmbedder, decode_images, default_workers, embed_images
from facenar.verify.metrics_reference import reference_evaluate

COLUMNS = ["task", "size", "median_s", "spread", "rate", "speed_up"]
PAIRS = 6000
BATCH = 256
TARGET_SPEED_UP = 20.0


def lfw_like_distances(num_pairs: int = PAIRS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances of unit embeddings, LFW layout: each fold = same pairs, then different."""
    rng = np.random.default_rng(seed)
    issame = np.tile(np.repeat([True, False], num_pairs // 20), 10)
    first = rng.normal(size=(num_pairs, 128))
    second = np.where(issame[:, None], first + 0.8 * rng.normal(size=first.shape), rng.normal(size=first.shape))
    emb = np.empty((2 * num_pairs, 128))
    emb[0::2], emb[1::2] = first, second
    return metrics.pair_distances(metrics.l2_normalize(emb)), issame


def _metric_rows(quick: bool) -> list[dict]:
    dist, issame = lfw_like_distances()
    ours, plain = metrics.evaluate_distances(dist, issame), reference_evaluate(dist, issame)
    if any(abs(ours[k] - plain[k]) > 1e-9 for k in ours):
        raise AssertionError(f"vectorised and plain protocols disagree: {ours} vs {plain}")
    times = interleaved_times({"vectorised": lambda: metrics.evaluate_distances(dist, issame),
                               "plain": lambda: reference_evaluate(dist, issame)},
                              repeats=3 if quick else 7, warmup=0)
    ratio = median(times["plain"]) / median(times["vectorised"])
    rows = []
    for name, label in (("plain", "protocol, plain loops (facenar.verify.metrics_reference)"),
                        ("vectorised", "protocol, vectorised (facenar.verify.metrics)")):
        rows.append({"task": label, "size": f"{PAIRS} pairs", "median_s": median(times[name]),
                     "spread": f"±{100 * spread(times[name]):.0f}%", "rate": "",
                     "speed_up": round(ratio, 1) if name == "vectorised" else 1.0})
    return rows


def _pipeline_rows(quick: bool) -> list[dict]:
    count = 512 if quick else 2048
    blobs = [jpeg for i in range(count // 8) for jpeg in identity_images(0, "lfw", i, 8)]
    repeats = 2 if quick else 3
    rows = []
    for workers in (1, default_workers()):
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            images = decode_images(blobs, 112, workers=workers)
            seconds.append(time.perf_counter() - start)
        rows.append({"task": f"decode .bin JPEGs, {workers} thread(s)", "size": f"{count} images",
                     "median_s": median(seconds), "spread": f"±{100 * spread(seconds):.0f}%",
                     "rate": f"{count / median(seconds):.0f} images/s", "speed_up": ""})
    torch.manual_seed(0)
    arch = Arch.baseline("iresnet18", width=0.125, embedding_size=128)
    embedder = TorchEmbedder(build_child(arch).eval(), "cpu", arch.input_size)
    embed_images(embedder, images[:BATCH], BATCH, flip=True)  # warm-up
    seconds = interleaved_times({"embed": lambda: embed_images(embedder, images, BATCH, flip=True)},
                                repeats, warmup=0)["embed"]
    rows.append({"task": f"embed with flip, iresnet18 x0.125, batch {BATCH}, "
                         f"{torch.get_num_threads()} torch thread(s)", "size": f"{count} images",
                 "median_s": median(seconds), "spread": f"±{100 * spread(seconds):.0f}%",
                 "rate": f"{count / median(seconds):.0f} images/s", "speed_up": ""})
    return rows


def run(quick: bool = False) -> list[dict]:
    return _metric_rows(quick) + _pipeline_rows(quick)


def section(rows: list[dict], quick: bool) -> Section:
    result = Section("Verification: 10-fold protocol and embedding pipeline", COLUMNS, rows)
    ratio = next(row["speed_up"] for row in rows if row["task"].startswith("protocol, vectorised"))
    result.target(f"vectorised protocol >= {TARGET_SPEED_UP:.0f}x the plain loops", ratio >= TARGET_SPEED_UP,
                  f"{ratio}x on {PAIRS} pairs; both give identical numbers")
    result.notes.append("protocol = accuracy (400 thresholds) + VAL@FAR=1e-3 (4,000 thresholds) + AUC over "
                        "10 folds; median of interleaved repeats" + (" (quick mode: fewer repeats)" if quick else ""))
    result.notes.append("images are decoded once per bench and cached; each fold reuses the same embeddings")
    result.notes.append(", ".join(f"{k}: {v}" for k, v in machine_info().items()))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(argv, "benchmarks.verification", __doc__, lambda quick, device: section(run(quick), quick),
                          quick_help="fewer images and repeats (well under a minute)")


if __name__ == "__main__":
    run_cli(main)
