"""IJB-C scoring at full scale: facenar's vectorised pooling + pair scores + TARs against insightface's loops.

Random unit image features (512-d float32) laid out like IJB-C: 469,375 images in 23,124 templates
(several media each), 15,658,489 template pairs of which 19,557 genuine. Both paths get the same
features in the same run: facenar.verify.ijb_metrics (pool_templates, score_pairs, roc + TARs) and
facenar.verify.ijb_reference (insightface's eval_ijbc.py loops, 100,000-pair batches, sklearn's
roc_curve). Each path's time and its peak of new memory (tracemalloc, which numpy reports to) are
measured (CPU time untraced, then memory in a traced second run); the ratios are the figures to
quote. Both must give the same TARs and AUC, exactly.

    python -m benchmarks.ijb_eval [--quick]      (--quick: 1/20 of the counts)
"""
from __future__ import annotations

import time
import tracemalloc
from typing import Sequence

import numpy as np

from benchmarks.common import Section, benchmark_main, machine_info
from facenar_runtime.cli import run_cli
from facenar.verify import ijb_metrics as M, ijb_reference as R

IMAGES, TEMPLATES, PAIRS, GENUINE, DIM = 469_375, 23_124, 15_658_489, 19_557, 512
COLUMNS = ["path", "images", "templates", "pairs", "cpu_s", "wall_s", "peak_MiB", "speed_up", "memory_ratio"]


def release(scale: float, seed: int = 0):
    """Template/media ids, unit features and labelled pairs at `scale` x IJB-C's counts."""
    rng = np.random.default_rng(seed)
    images, templates, pairs = (max(10, int(n * scale)) for n in (IMAGES, TEMPLATES, PAIRS))
    template_of = np.r_[np.arange(templates), rng.integers(0, templates, images - templates)]
    media_of = template_of * 16 + rng.integers(0, 6, images)          # a few media per template, frames in each
    feats = rng.standard_normal((images, DIM), dtype=np.float32)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    p1, p2 = rng.integers(0, templates, pairs), rng.integers(0, templates, pairs)
    labels = np.zeros(pairs, bool)
    labels[rng.choice(pairs, max(2, int(GENUINE * scale)), replace=False)] = True
    return template_of, media_of, feats, p1, p2, labels


def ours(templates, medias, feats, p1, p2, labels):
    ids, pooled = M.pool_templates(feats, templates, medias)
    scores = M.score_pairs(pooled, M.template_rows(ids, p1)[0], M.template_rows(ids, p2)[0])
    curve = M.roc(labels, scores)
    return ({f: M.tar_at_far(curve, f) for f in M.FARS}, {f: M.tar_at_far_strict(curve, f) for f in M.FARS},
            M.auc(curve))


def reference(templates, medias, feats, p1, p2, labels):
    ids, pooled = R.reference_templates(feats, templates, medias)
    scores = R.reference_scores(pooled, ids, p1, p2)
    table, _, area = R.reference_tars(labels, scores, M.FARS)
    return table, area


def measure(fn, *args):
    """(result, wall s, CPU s, peak MiB): timed without tracing, then traced in a second run."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tracemalloc.start()
    fn(*args)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, wall, cpu, peak / 2 ** 20


def compare(quick: bool = False) -> tuple[list[dict], dict]:
    """Both paths on one synthetic release: their rows, and the numbers both must give."""
    data = release(0.05 if quick else 1.0)
    (table, strict, area), ours_wall, ours_s, ours_mib = measure(ours, *data)
    (ref_table, ref_area), ref_wall, ref_s, ref_mib = measure(reference, *data)
    if table != ref_table or area != ref_area:
        raise AssertionError(f"facenar and insightface's loops disagree: {table} {area} vs {ref_table} {ref_area}")
    sizes = {"images": len(data[0]), "templates": len(np.unique(data[0])), "pairs": len(data[3])}
    rows = [{"path": "insightface loops (ijb_reference)", **sizes, "cpu_s": ref_s, "wall_s": ref_wall,
             "peak_MiB": round(ref_mib), "speed_up": 1.0, "memory_ratio": 1.0},
            {"path": "facenar vectorised (ijb_metrics)", **sizes, "cpu_s": ours_s, "wall_s": ours_wall,
             "peak_MiB": round(ours_mib),
             "speed_up": round(ref_s / ours_s, 1), "memory_ratio": round(ours_mib / ref_mib, 2)}]
    return rows, {"tar_at_1e-4": table[1e-4], "strict_at_1e-4": strict[1e-4], "auc": area}


def section(result, quick: bool) -> Section:
    rows, numbers = result
    out = Section("IJB-C scoring: pooling + pair scores + TARs, vectorised vs insightface's loops", COLUMNS, rows)
    out.target("identical TARs and AUC", True, f"TAR@1e-4 {numbers['tar_at_1e-4']:.6f} on both paths, "
                                               f"AUC {numbers['auc']:.6f}")
    out.notes.append("speed_up = ratio of CPU seconds (process time; wall time on a shared machine mostly "
                     "measures the neighbours)")
    out.notes.append("random unit features (so TARs are near chance); peak = most new memory during the path, "
                     "beyond the input features (" + ("quick: 1/20 of IJB-C's counts" if quick else
                                                     "IJB-C's full counts") + ")")
    out.notes.append(", ".join(f"{k}: {v}" for k, v in machine_info().items()))
    return out


def run(quick: bool = False) -> Section:
    """The section benchmarks.run collects (it takes a Section or rows)."""
    return section(compare(quick), quick)


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(argv, "benchmarks.ijb_eval", __doc__, lambda quick, device: run(quick),
                          quick_help="1/20 of IJB-C's counts (well under a minute)")


if __name__ == "__main__":
    run_cli(main)
