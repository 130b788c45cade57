"""IJB images -> raw embeddings (plain and mirrored), decoded and aligned in worker processes, cached.

Each image of the landmark file is read from loose_crop/, aligned with its 5 landmarks to the
112x112 ArcFace template (data_tools.align; this template is the one insightface's IJB code builds
by shifting its 96x112 template +8 px in x) and turned to RGB, as arcface_torch/eval_ijbc.py does.
Decoding and warping run in a process pool while the model embeds the previous batch.
The raw embeddings of both the images and their mirrors are cached beside the output, keyed by
the model file and the meta files, so changing the norm/detector/flip switches or the FARs
re-embeds nothing: two forwards for each of IJB-C's 469,375 images are by far the longest phase.
"""
from __future__ import annotations

import collections
import json
import multiprocessing
import os
from pathlib import Path

import cv2
import numpy as np

from data_tools.align import align_face
from facenar_runtime.atomic import atomic_open
from facenar_runtime.cli import progress
from facenar_runtime.errors import UserError
from data_tools.ijb_meta import row_error

CACHE_VERSION = 1
ALIGNED = 112


class _ImageProblem(Exception):
    """Raised in a worker; the main process turns it into a UserError naming the landmark line."""

    def __init__(self, row: int, message: str):
        super().__init__(row, message)
        self.row, self.message = row, message


def _align_batch(job: tuple) -> np.ndarray:
    """Read and align images first..first+len(names)-1: uint8 [B, 112, 112, 3] RGB."""
    folder, names, points, first = job
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)   # our error line says it, once
    out = np.empty((len(names), ALIGNED, ALIGNED, 3), np.uint8)
    for offset, (name, landmarks) in enumerate(zip(names, points)):
        path = os.path.join(folder, name)
        image = cv2.imread(path, cv2.IMREAD_COLOR) if os.path.isfile(path) else None
        if image is None:
            what = "not found" if not os.path.isfile(path) else "not a readable image"
            raise _ImageProblem(first + offset, f"image {path} {what}")
        try:
            out[offset] = cv2.cvtColor(align_face(image, landmarks), cv2.COLOR_BGR2RGB)
        except ValueError as exc:      # NaN or collapsed landmarks
            raise _ImageProblem(first + offset, str(exc)) from None
    return out


def _batches(folder: Path, names: np.ndarray, points: np.ndarray, batch_size: int):
    return [(str(folder), names[i:i + batch_size].tolist(), points[i:i + batch_size], i)
            for i in range(0, len(names), batch_size)]


def _bounded_map(pool, jobs: list, ahead: int):
    """pool.imap in order, but at most `ahead` batches decoded and waiting: a CPU embeds slower than
    the workers align, and imap would queue all of IJB-C's aligned images (~17 GB) in memory."""
    pending = collections.deque()
    for job in jobs:
        pending.append(pool.apply_async(_align_batch, (job,)))
        if len(pending) > ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def embed_images(embedder, folder: Path, names: np.ndarray, points: np.ndarray, landmark_path: Path,
                 batch_size: int = 256, workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Raw float32 embeddings of every aligned image and of its mirror, in landmark-file order."""
    jobs = _batches(folder, names, points, batch_size)
    plain, mirrored = [], []
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        aligned = _bounded_map(pool, jobs, 2 * workers) if pool else map(_align_batch, jobs)
        for batch in progress(aligned, total=len(jobs), desc="align + embed"):
            plain.append(embedder(batch))
            mirrored.append(embedder(np.ascontiguousarray(batch[:, :, ::-1])))
    except _ImageProblem as problem:
        raise row_error(landmark_path, problem.row, problem.message) from None
    finally:
        if pool:
            pool.terminate()
            pool.join()
    return np.concatenate(plain).astype(np.float32), np.concatenate(mirrored).astype(np.float32)


def _stamp(path: str | os.PathLike) -> list:
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def cache_key(model_path, meta_paths) -> str:
    """What the cached embeddings depend on: the model file and the meta files (path, size, mtime)."""
    return json.dumps({"version": CACHE_VERSION, "model": _stamp(model_path),
                       "meta": [_stamp(p) for p in meta_paths]}, sort_keys=True)


def load_cache(path: Path, key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The cached (plain, mirrored) embeddings if `path` holds them for `key`, else None."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return data["plain"], data["mirrored"]
    except (OSError, ValueError, KeyError, EOFError):
        return None


def check_cache_path(path: Path) -> None:
    """Refuse to overwrite a file at the cache path that is not a facenar IJB cache."""
    if not os.path.lexists(path):
        return
    try:
        with np.load(path, allow_pickle=False) as data:
            if {"key", "plain", "mirrored"} <= set(data.files):
                return
    except (OSError, ValueError, EOFError):
        pass
    raise UserError(f"--cache {path} exists and is not a facenar IJB embedding cache; not replacing it; "
                    "give another --cache path")


def save_cache(path: Path, key: str, plain: np.ndarray, mirrored: np.ndarray) -> None:
    with atomic_open(path, "wb") as handle:
        np.savez(handle, key=np.array(key), plain=plain, mirrored=mirrored)
