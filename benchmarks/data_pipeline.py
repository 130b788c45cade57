"""Data pipeline speed: .rec read + JPEG decode, ours against mxnet's, DataLoader throughput, ImageFolder decode.

Both readers decode the same synthetic-face .rec (112x112 JPEGs from data_tools.demo) in the
same run, in interleaved rounds; mxnet (MXIndexedRecordIO + mx.image.imdecode) runs in its peer
venv through a subprocess and times itself, so its start-up is not counted. Then images/s of a
RecordFaceDataset DataLoader (2 workers) with flip and with strong augmentation. Last, the
ImageNet-style decoder (data_tools.imagefolder.decode_image) on photo-sized JPEGs: cv2's full
decode against its reduced (1/2, 1/4, 1/8 scale) JPEG decode, which the classification loader
uses when the crop it needs still has enough pixels.

    python -m benchmarks.data_pipeline [--quick]
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from benchmarks.common import Section, benchmark_main, interleaved_times, machine_info, median, spread
from data_tools import imagefolder
from facenar_runtime.cli import run_cli
from data_tools.demo import identity_images
from data_tools.emore import EmoreDataset, write_emore, write_property
from facenar.data import EpochSampler, RecordFaceDataset, SeededSamples, decode_image, make_loader

COLUMNS = ["pipeline", "images", "images_per_s", "spread", "vs_mxnet", "per_worker_vs_decode", "vs_full_decode",
           "mean_abs_diff"]
PHOTO_SIZE = (375, 500)  # height, width: a typical ImageNet training photo
MXNET_PASS = r"""
import json, sys, time
import mxnet as mx
rec = mx.recordio.MXIndexedRecordIO(sys.argv[2], sys.argv[1], "r")
keys = [int(k) for k in sys.argv[3].split(",")]
def imdecode():
    for key in keys:
        header, data = mx.recordio.unpack(rec.read_idx(key))
        mx.image.imdecode(data).asnumpy()
def unpack_img():  # mxnet's reader with the cv2 (4.11) of the peer venv: isolates the decoder choice
    for key in keys:
        mx.recordio.unpack_img(rec.read_idx(key), 1)
result = {}
for name, one_pass in (("imdecode", imdecode), ("unpack_img", unpack_img)):
    one_pass()  # warm-up: page cache, lazy initialisation
    start = time.perf_counter()
    one_pass()
    result[name] = time.perf_counter() - start
print(json.dumps(result))
"""


def mxnet_python() -> Path | None:
    """The mxnet peer venv's python (see tests/peers.py), or None when it was never created."""
    home = Path(os.environ.get("FACENAR_PEER_HOME", Path.home() / ".cache" / "facenar" / "peers"))
    python = home / "mxnet" / "bin" / "python"
    return python if python.is_file() else None


def _mxnet_seconds(python: Path, folder: Path, keys: list[int]) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1", MXNET_SUBGRAPH_VERBOSE="0")
    done = subprocess.run([str(python), "-c", MXNET_PASS, str(folder / "train.rec"), str(folder / "train.idx"),
                           ",".join(map(str, keys))], capture_output=True, text=True, env=env, cwd="/",
                          timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"mxnet peer failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_faces(folder: Path, num_ids: int, per_id: int) -> None:
    write_emore(folder, (identity_images(0, "train", i, per_id) for i in range(num_ids)))
    write_property(folder, num_ids)


def _ours_seconds(dataset: EmoreDataset, keys: list[int]) -> float:
    start = time.perf_counter()
    for key in keys:
        decode_image(dataset.read_image(key))
    return time.perf_counter() - start


def _loader_rate(folder: Path, augment: str, batches: int) -> float:
    loader = make_loader(RecordFaceDataset(folder, augment=augment), 64, shuffle=True, seed=0, workers=2,
                         drop_last=True)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    count = 0
    for _ in range(batches):
        count += len(next(iterator)[1])
    return count / (time.perf_counter() - start)


def _training_loader_rate(folder: Path, workers: int, batches: int) -> float:
    """images/s of facenar.train's loader (flip, seeded per sample, EpochSampler keys, uint8, persistent)."""
    samples = SeededSamples(RecordFaceDataset(folder, augment="flip"), seed=0)
    sampler = EpochSampler(len(samples), 0, 1, seed=0)
    loader = make_loader(samples, 64, sampler=sampler, workers=workers, drop_last=True, persistent=True)
    iterator = iter(loader)
    next(iterator)  # worker start-up is not throughput
    start = time.perf_counter()
    count = sum(len(next(iterator)[1]) for _ in range(batches))
    return count / (time.perf_counter() - start)


def training_loader_rows(folder: Path, decode_rate: float, batches: int) -> list[dict]:
    """The training loader with 0 (in-process), 1 and the default 2 workers; per worker against bare decode."""
    rows = []
    for workers in (0, 1, 2):
        rate = _training_loader_rate(folder, workers, batches)
        label = "in the training process" if workers == 0 else f"{workers} worker(s)" + (
            " (the CPU default)" if workers == 2 else "")
        rows.append({"pipeline": f"training loader, {label}, batch 64, flip", "images": batches * 64,
                     "images_per_s": round(rate), "spread": "", "vs_mxnet": "",
                     "per_worker_vs_decode": round(rate / max(workers, 1) / decode_rate, 2)})
    return rows


def photo_jpegs(count: int, height: int, width: int) -> list[np.ndarray]:
    """JPEG bytes (quality 90) of demo shapes overlaid with fine texture: smooth drawings compress to a
    fraction of a photo's size and decode unrealistically fast; textured ones take ~60 KiB at 500x375,
    the order of ImageNet's photos (~110 KiB on average)."""
    from data_tools.cifar_demo import draw

    files = []
    for index in range(count):
        rng = np.random.default_rng([index, 7])
        noise = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
        texture = cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
        image = cv2.addWeighted(draw(index % 10, rng, height, width), 0.6, texture, 0.4, 0)
        files.append(cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].ravel())
    return files


def _reduction_error(data: np.ndarray, factor: int) -> float:
    """Mean |reduced decode - full decode shrunk to the same size with INTER_AREA|, on 0-255."""
    small = imagefolder.decode_image(data, "bench", factor)
    full = imagefolder.decode_image(data, "bench", 1)
    shrunk = cv2.resize(full, small.shape[1::-1], interpolation=cv2.INTER_AREA)
    return float(np.abs(small.astype(np.int16) - shrunk).mean())


def imagefolder_decode_rows(quick: bool) -> list[dict]:
    """images/s of the full and each reduced decode (interleaved passes) and how far each is from the full one."""
    files = photo_jpegs(8 if quick else 40, *PHOTO_SIZE)
    kib = np.mean([f.size for f in files]) / 1024
    passes = {factor: (lambda factor=factor: [imagefolder.decode_image(f, "bench", factor) for f in files])
              for factor in imagefolder.REDUCED}
    times = interleaved_times(passes, 3 if quick else 7)
    rows = []
    for factor, seconds in times.items():
        label = "full decode" if factor == 1 else f"reduced decode 1/{factor}"
        rows.append({"pipeline": f"ImageFolder JPEG {PHOTO_SIZE[1]}x{PHOTO_SIZE[0]} ({kib:.0f} KiB): cv2 {label}",
                     "images": len(files), "images_per_s": round(len(files) / median(seconds)),
                     "spread": f"±{100 * spread(seconds):.0f}%", "vs_mxnet": "",
                     "vs_full_decode": round(median(times[1]) / median(seconds), 2),
                     "mean_abs_diff": round(float(np.mean([_reduction_error(f, factor) for f in files])), 2)})
    return rows


def run(quick: bool = False) -> list[dict]:
    num_ids, per_id, rounds = (20, 50, 3) if quick else (60, 50, 5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="facenar-data-bench-") as tmp:
        folder = Path(tmp)
        _write_faces(folder, num_ids, per_id)
        dataset = EmoreDataset(folder)
        keys = dataset.image_keys.tolist()
        python = mxnet_python()
        _ours_seconds(dataset, keys)  # warm-up
        ours, theirs = [], []
        for _ in range(rounds):
            ours.append(_ours_seconds(dataset, keys))
            if python is not None:
                theirs.append(_mxnet_seconds(python, folder, keys))
        ours_rate = len(keys) / median(ours)
        reference = median([t["imdecode"] for t in theirs]) if theirs else None
        rows.append({"pipeline": "ours: RecordReader + cv2.imdecode (RGB)", "images": len(keys),
                     "images_per_s": round(ours_rate), "spread": f"±{100 * spread(ours):.0f}%",
                     "vs_mxnet": "" if reference is None else round(ours_rate * reference / len(keys), 2)})
        if reference is None:
            rows.append({"pipeline": "mxnet peer not available", "images": "", "images_per_s": "",
                         "spread": "", "vs_mxnet": ""})
        for name, label in (("imdecode", "mxnet 1.9.1: MXIndexedRecordIO + mx.image.imdecode"),
                            ("unpack_img", "mxnet 1.9.1: MXIndexedRecordIO + recordio.unpack_img (cv2 4.11)")):
            if theirs:
                times = [t[name] for t in theirs]
                rows.append({"pipeline": label, "images": len(keys), "images_per_s": round(len(keys) / median(times)),
                             "spread": f"±{100 * spread(times):.0f}%", "vs_mxnet": round(reference / median(times), 2)})
        batches = 6 if quick else 30
        for augment in ("flip", "strong"):
            rows.append({"pipeline": f"DataLoader, 2 workers, batch 64, augment={augment}",
                         "images": batches * 64, "images_per_s": round(_loader_rate(folder, augment, batches)),
                         "spread": "", "vs_mxnet": ""})
        rows += training_loader_rows(folder, ours_rate, batches)
    return rows + imagefolder_decode_rows(quick)


def section(rows: list[dict], quick: bool) -> Section:
    result = Section("Data pipeline: .rec read + JPEG decode, DataLoader throughput, ImageFolder decode", COLUMNS, rows)
    ratio = rows[0]["vs_mxnet"]
    if ratio != "":
        result.target("ours >= 0.9 x mxnet read + decode", ratio >= 0.9, f"{ratio:.2f}x")
    result.notes.append("read + decode: one process, one thread each, median of interleaved passes over the "
                        "same file; mxnet times itself inside its peer venv (start-up excluded); vs_mxnet = "
                        "images/s relative to mx.image.imdecode, which pays NDArray dispatch and a copy per image")
    result.notes.append("DataLoader rows: decode + resize check + augmentation + tensor conversion, "
                        "after worker start-up" + ("; quick mode: fewer images and batches" if quick else ""))
    result.notes.append("training loader rows: facenar.train's pipeline (per-sample reseeding, decode, flip, uint8 "
                        "tensors, one cv2 thread per worker); per_worker_vs_decode = images/s per worker (or of the "
                        "process itself with 0 workers) over the bare read + decode row: what reseeding, "
                        "augmentation and batching cost; workers compete with each other for this machine's cores")
    result.notes.append("ImageFolder rows (the classification decoder, data_tools.imagefolder.decode_image): "
                        "generated photo-like JPEGs (demo shapes + fine texture, quality 90), decode only, one "
                        "thread, median of interleaved passes; mean_abs_diff = mean |reduced decode - full decode "
                        "shrunk to the same size with INTER_AREA| on 0-255. The loader reduces only when the "
                        "decoded crop keeps at least the output's pixels (never upsamples), so the gain applies "
                        "to large photos and to resize-256 evaluation of photos >= 512 px")
    result.notes.append(", ".join(f"{k}: {v}" for k, v in machine_info().items()))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(argv, "benchmarks.data_pipeline", __doc__, lambda quick, device: section(run(quick), quick),
                          quick_help="fewer images and rounds (well under a minute)")


if __name__ == "__main__":
    run_cli(main)
