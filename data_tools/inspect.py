"""python -m data_tools.inspect DIR: what an emore dataset holds, and optionally whether every
image decodes at the size `property` promises (in parallel; each worker maps the .rec itself).

Exit code 1 when --verify-images finds undecodable or wrongly sized images.
"""
from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from facenar_runtime.cli import number, progress, run_cli
from facenar_runtime import limits
from data_tools.emore import EmoreDataset
from data_tools.recordio import RecordReader, unpack_record

CHUNK = 512
SHOWN_KEYS = 20
_worker_reader: RecordReader | None = None


def summarize(dataset: EmoreDataset, per_id: int = 40) -> dict:
    """Identity and image counts from the identity records alone (no image is read)."""
    sizes = np.array(list(dataset.counts().values()), dtype=np.int64)
    return {"folder": str(dataset.folder), "layout": "emore header" if dataset.has_header else "im2rec",
            "num_classes": dataset.num_classes, "image_size": dataset.image_size,
            "identities": int(sizes.size), "images": dataset.num_images,
            "per_id_min": int(sizes.min()) if sizes.size else 0,
            "per_id_median": float(np.median(sizes)) if sizes.size else 0.0,
            "per_id_max": int(sizes.max()) if sizes.size else 0,
            "per_id_threshold": per_id, "ids_with_enough": int((sizes >= per_id).sum())}


def _open_worker(rec_path: str, idx_path: str) -> None:
    global _worker_reader
    import cv2

    cv2.setNumThreads(1)
    _worker_reader = RecordReader(rec_path, idx_path)


def _check_chunk(keys: list[int], expected: tuple[int, int]) -> tuple[int, list[int], list[tuple[int, int, int]]]:
    """(images checked, undecodable keys, (key, h, w) of wrongly sized images) for one chunk."""
    import cv2

    undecodable, wrong_size = [], []
    for key in keys:
        _, data = unpack_record(_worker_reader.read(key), f"{_worker_reader.rec_path} key {key}")
        buffer = np.frombuffer(data, dtype=np.uint8)
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED) if buffer.size else None
        if image is None:
            undecodable.append(key)
        elif image.shape[:2] != expected:
            wrong_size.append((key, image.shape[0], image.shape[1]))
    return len(keys), undecodable, wrong_size


def _check_job(job: tuple[list[int], tuple[int, int]]):
    return _check_chunk(*job)


def verify_images(dataset: EmoreDataset, workers: int | None = None) -> dict:
    """Decode every image with `workers` processes; report failures and throughput."""
    workers = max(1, workers or os.cpu_count() or 1)
    keys = dataset.image_keys.tolist()
    jobs = [(keys[i:i + CHUNK], dataset.image_size) for i in range(0, len(keys), CHUNK)]
    paths = (str(dataset.reader.rec_path), str(dataset.reader.idx_path))
    undecodable: list[int] = []
    wrong_size: list[tuple[int, int, int]] = []
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workers == 1:
            _open_worker(*paths)
            results = map(_check_job, jobs)
        else:
            # spawn: the caller may hold threads (or torch), which fork does not survive well
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(workers, _open_worker, paths))
            results = pool.imap_unordered(_check_job, jobs)
        for _, bad, wrong in progress(results, total=len(jobs), desc=f"decode ({CHUNK} per step)"):
            undecodable += bad
            wrong_size += wrong
    seconds = time.perf_counter() - started
    return {"checked": len(keys), "undecodable": sorted(undecodable), "wrong_size": sorted(wrong_size),
            "seconds": seconds, "images_per_s": len(keys) / seconds if seconds else 0.0, "workers": workers}


def format_report(summary: dict, verified: dict | None = None) -> str:
    height, width = summary["image_size"]
    lines = [f"dataset       {summary['folder']} ({summary['layout']} layout)",
             f"identities    {summary['identities']} with images (property: {summary['num_classes']} classes, {height}x{width})",
             f"images        {summary['images']}",
             f"per identity  min {summary['per_id_min']} / median {summary['per_id_median']:g} / max {summary['per_id_max']}",
             f">= {summary['per_id_threshold']} images  {summary['ids_with_enough']} identities"]
    if verified is not None:
        lines.append(f"verified      {verified['checked']} images in {verified['seconds']:.1f} s "
                     f"({verified['images_per_s']:.0f} images/s, {verified['workers']} workers): "
                     f"{len(verified['undecodable'])} undecodable, {len(verified['wrong_size'])} not {height}x{width}")
        if verified["undecodable"]:
            lines.append("undecodable keys: " + " ".join(map(str, verified["undecodable"][:SHOWN_KEYS]))
                         + (" ..." if len(verified["undecodable"]) > SHOWN_KEYS else ""))
        if verified["wrong_size"]:
            lines.append("wrong sizes (key:HxW): " + " ".join(f"{k}:{h}x{w}" for k, h, w in verified["wrong_size"][:SHOWN_KEYS])
                         + (" ..." if len(verified["wrong_size"]) > SHOWN_KEYS else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m data_tools.inspect",
                                     description="Summarise an emore dataset folder (train.rec/idx + property).")
    parser.add_argument("folder", type=Path, help="dataset folder")
    parser.add_argument("--prefix", default="train", help="record file name without extension (default train)")
    parser.add_argument("--per-id", type=number(int, min=1, max=limits.IMAGES), default=40, help="report how many identities have at least this many images")
    parser.add_argument("--verify-images", action="store_true", help="decode every image and check its size")
    parser.add_argument("--workers", type=number(int, min=1, max=limits.WORKERS), default=os.cpu_count(), help="decoding processes (default: all cores)")
    args = parser.parse_args(argv)
    dataset = EmoreDataset(args.folder, args.prefix)
    verified = verify_images(dataset, args.workers) if args.verify_images else None
    print(format_report(summarize(dataset, args.per_id), verified))
    return 1 if verified and (verified["undecodable"] or verified["wrong_size"]) else 0


if __name__ == "__main__":
    run_cli(main)
