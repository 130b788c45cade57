"""The built-in synthetic demo dataset: drawn "faces" in the exact insightface emore layout.

It exists so every command has a meaningful default and the tests exercise the real formats on
a laptop. Identities differ in learnable ways (head shape, colours, feature placement and size,
glasses, beard, marks); every image adds nuisance (pose, lighting, blur, noise, JPEG) and small
appearance drift, so verification is learnable but not trivial. Every identity draws from its
own seeded generator, so the output is byte-identical for a seed whatever the worker count.
The verification benches use held-out identities, 10 identity-disjoint folds laid out like LFW
(per fold: positive pairs, then negative pairs); cfp_fp stresses pose, agedb_30 appearance drift.
"""
from __future__ import annotations

import contextlib
import itertools
import json
import math
import multiprocessing
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from data_tools import emore
from facenar_runtime.atomic import atomic_path, write_text_atomic
from data_tools.binfile import save_bin
from facenar_runtime.cli import progress
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import check_outputs
from data_tools.demo_cache import MARKER, ensure_generated
from facenar_runtime.paths import demo_data_dir

GENERATOR_VERSION = 1

SIZE = 112
FOLDS = 10
IMAGES_PER_BENCH_ID = 6
DEFAULTS = {"num_ids": 600, "images_per_id": 50, "pairs_per_bench": 300, "seed": 0}


@dataclass(frozen=True)
class Nuisance:
    """Per-image variation of one image population (train or a bench)."""
    rotate: float = 7.0       # max in-plane rotation, degrees
    shift: float = 3.0        # max translation, pixels
    scale: float = 0.06       # max relative zoom
    yaw: tuple = (0.0, 0.3)   # |yaw| range (1.0 = fully turned)
    drift: float = 0.5        # per-image jitter of identity traits, in units of 15% of their range
    ageing: float = 0.0       # max greying / receding / wrinkles


TRAIN = Nuisance()
BENCHES = {
    "lfw": TRAIN,
    "cfp_fp": replace(TRAIN, rotate=10.0, yaw=(0.35, 0.85)),
    "agedb_30": replace(TRAIN, drift=0.8, ageing=1.0),
}

# identity traits drawn uniformly in these ranges (pixels unless noted); drift jitters them
TRAITS = {
    "face_w": (28, 38), "face_h": (39, 49), "face_cy": (61, 68), "hair_vol": (1, 9), "fringe": (0, 8),
    "eye_dx": (14, 21), "eye_y": (47, 55), "eye_w": (4, 7), "eye_h": (1.8, 3.4), "brow_dy": (6, 10),
    "brow_tilt": (-2.5, 2.5), "brow_len": (6, 11), "nose_y": (66, 76), "nose_w": (3, 7),
    "mouth_y": (84, 93), "mouth_w": (8, 16), "mouth_curve": (-3, 4), "skin_tone": (0, 1),
    "lip_red": (0, 1),
}
HAIR_COLOURS = np.array([[25, 25, 30], [30, 50, 90], [60, 110, 170], [40, 70, 150], [150, 150, 155],
                         [20, 30, 55], [90, 140, 200]], np.float64)  # BGR
IRIS_COLOURS = np.array([[30, 60, 100], [140, 100, 40], [60, 110, 60], [30, 30, 40]], np.float64)
SKIN_LIGHT, SKIN_DARK = np.array([175, 200, 235.0]), np.array([55, 85, 135.0])


def _identity(rng: np.random.Generator) -> dict:
    traits = {name: rng.uniform(low, high) for name, (low, high) in TRAITS.items()}
    traits.update(
        skin_cast=rng.normal(0, 10, 3), hair=HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 12, 3),
        iris=IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))], long_hair=rng.random() < 0.35,
        glasses=rng.random() < 0.2, glasses_round=rng.random() < 0.5, frame=rng.uniform(0, 120, 3),
        beard=rng.random() < 0.2, mole=rng.random() < 0.3, mole_at=rng.uniform(-1, 1, 2),
        brow_t=int(rng.integers(1, 4)), mouth_t=int(rng.integers(1, 3)),
    )
    return traits


def _jitter(ident: dict, nuisance: Nuisance, rng: np.random.Generator) -> dict:
    traits = dict(ident)
    noise = rng.normal(0, nuisance.drift * 0.15, len(TRAITS)).tolist()
    for (name, (low, high)), step in zip(TRAITS.items(), noise):
        traits[name] = min(high, max(low, ident[name] + step * (high - low)))
    traits["hair"] = ident["hair"] + rng.normal(0, nuisance.drift * 16, 3)
    traits["skin_cast"] = ident["skin_cast"] + rng.normal(0, nuisance.drift * 8, 3)
    traits["glasses"] = ident["glasses"] != (rng.random() < 0.3 * nuisance.drift)  # glasses come and go
    age = rng.uniform(0, nuisance.ageing)
    traits["hair"] = traits["hair"] + age * 0.7 * (np.array([165.0, 165, 170]) - traits["hair"])
    traits["fringe"] *= 1 - 0.8 * age
    traits["age"] = age
    return traits


def _bgr(colour) -> tuple[float, float, float]:
    return tuple(min(255.0, max(0.0, float(c))) for c in colour)


def _pt(x: float, y: float) -> tuple[int, int]:
    return int(round(x * 4)), int(round(y * 4))  # cv2 drawing with shift=2: quarter-pixel precision


def _ellipse(img, centre, axes, colour, start=0, end=360, thickness=-1, angle=0.0):
    cv2.ellipse(img, _pt(*centre), _pt(max(axes[0], 0.5), max(axes[1], 0.5)), angle, start, end,
                _bgr(colour), thickness, cv2.LINE_AA, 2)


def _line(img, a, b, colour, thickness):
    cv2.line(img, _pt(*a), _pt(*b), _bgr(colour), thickness, cv2.LINE_AA, 2)


def _draw_face(t: dict, yaw: float, background) -> np.ndarray:
    img = np.empty((SIZE, SIZE, 3), np.uint8)
    img[:] = background
    cx, cy, w, h = SIZE / 2, t["face_cy"], t["face_w"] * (1 - 0.15 * abs(yaw)), t["face_h"]
    fx = cx + yaw * t["face_w"] * 0.35  # features slide toward the turned side
    skin = SKIN_LIGHT + t["skin_tone"] * (SKIN_DARK - SKIN_LIGHT) + t["skin_cast"] - 25 * t["age"]
    hair, hair_top = t["hair"], cy - 0.62 * h
    if t["long_hair"]:
        _ellipse(img, (cx, cy + 0.1 * h), (w + t["hair_vol"] + 3, h * 0.95), hair)
    _ellipse(img, (cx, hair_top), (w + t["hair_vol"], 0.5 * h + t["hair_vol"]), hair)
    for side in (-1, 1):  # ears, the far one hidden by the turn
        if side * yaw < 0.4:
            _ellipse(img, (cx + side * (w - 1), t["eye_y"] + 6), (4, 7), skin * 0.9)
    _ellipse(img, (cx, cy), (w, h), skin)
    _ellipse(img, (cx, hair_top), (w + t["hair_vol"], 0.5 * h + t["hair_vol"]), hair, 180, 360)
    _ellipse(img, (fx, hair_top), (w * 0.85, t["fringe"] + 1), hair, 0, 180)
    if t["beard"]:
        _ellipse(img, (fx, cy + 0.2 * h), (w * 0.85, 0.8 * h), hair * 0.9 + skin * 0.1, 20, 160)
    if t["age"] > 0.5:  # forehead lines
        for k in range(2):
            _line(img, (fx - 9, hair_top + 8 + 3 * k), (fx + 9, hair_top + 8 + 3 * k), skin * 0.8, 1)
    dark = hair * 0.6
    for side in (-1, 1):
        ex, ey = fx + side * t["eye_dx"], t["eye_y"]
        shrink = 1 - 0.45 * max(0.0, -side * yaw)
        _ellipse(img, (ex, ey), (t["eye_w"] * shrink, t["eye_h"]), (235, 235, 235))
        _ellipse(img, (ex + yaw * 1.5, ey), (t["eye_h"] * 0.9 * shrink, t["eye_h"] * 0.9), t["iris"])
        _ellipse(img, (ex + yaw * 1.5, ey), (0.8, 0.8), (15, 15, 15))
        by, half = ey - t["brow_dy"], t["brow_len"] / 2 * shrink
        _line(img, (ex - half, by + side * t["brow_tilt"] / 2), (ex + half, by - side * t["brow_tilt"] / 2),
              dark, t["brow_t"])
        if t["glasses"]:
            frame_axes = (t["eye_w"] * shrink + 3, t["eye_h"] + 4)
            if t["glasses_round"]:
                _ellipse(img, (ex, ey), frame_axes, t["frame"], thickness=1)
            else:
                corner = np.array(frame_axes)
                cv2.rectangle(img, _pt(*((ex, ey) - corner)), _pt(*((ex, ey) + corner)), _bgr(t["frame"]), 1,
                              cv2.LINE_AA, 2)
    if t["glasses"]:
        _line(img, (fx - t["eye_dx"] + t["eye_w"] + 3, t["eye_y"]), (fx + t["eye_dx"] - t["eye_w"] - 3, t["eye_y"]),
              t["frame"], 1)
    nx, ny = fx + yaw * 5, t["nose_y"]
    _line(img, (nx, t["eye_y"] + 3), (nx + 1.5, ny - 1), skin * 0.75, 1)
    for side in (-1, 1):
        _ellipse(img, (nx + side * t["nose_w"] / 2, ny), (1.4, 1.0), skin * 0.5)
    lip = skin * 0.7 + np.array([0, 0, 60.0]) * t["lip_red"]
    mx, my, curve = fx + yaw * 2, t["mouth_y"], t["mouth_curve"]
    if curve >= 0:
        _ellipse(img, (mx, my - curve), (t["mouth_w"], curve + 0.5), lip, 0, 180, t["mouth_t"])
    else:
        _ellipse(img, (mx, my - curve), (t["mouth_w"], -curve + 0.5), lip, 180, 360, t["mouth_t"])
    if t["mole"]:
        _ellipse(img, (fx + t["mole_at"][0] * w * 0.6, cy + 8 + t["mole_at"][1] * 10), (1.3, 1.3), skin * 0.35)
    return img


def render(ident: dict, nuisance: Nuisance, rng: np.random.Generator) -> bytes:
    """One JPEG image of `ident` under random nuisance drawn from `rng`."""
    traits = _jitter(ident, nuisance, rng)
    yaw = rng.uniform(*nuisance.yaw) * rng.choice((-1, 1))
    img = _draw_face(traits, yaw, rng.uniform(30, 220, 3))
    angle, zoom = rng.uniform(-nuisance.rotate, nuisance.rotate), 1 + rng.uniform(-nuisance.scale, nuisance.scale)
    matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), angle, zoom)
    matrix[:, 2] += rng.uniform(-nuisance.shift, nuisance.shift, 2)
    img = cv2.warpAffine(img, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    theta, slope = rng.uniform(0, 2 * math.pi), rng.uniform(0, 0.35)
    ramp = 1 + slope * (np.cos(theta) * _GRID[0] + np.sin(theta) * _GRID[1])
    gain = rng.uniform(0.7, 1.2) * (1 + rng.uniform(-0.08, 0.08, 3))
    # cv2 arithmetic: numpy's broadcasting over a trailing axis of 3 was the slowest step here
    out = cv2.multiply(img, cv2.merge([ramp * g for g in gain.tolist()]), dtype=cv2.CV_32F)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.5, 1.4))
    out = cv2.scaleAdd(_NOISE[rng.integers(len(_NOISE))], rng.uniform(0, 6), out)
    _, encoded = cv2.imencode(".jpg", np.clip(out, 0, 255, out=out).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(55, 96))])
    return encoded.tobytes()


_GRID = np.stack(np.meshgrid(np.linspace(-1, 1, SIZE), np.linspace(-1, 1, SIZE))).astype(np.float32)
# a fixed bank of unit sensor-noise fields: drawing fresh Gaussian noise per image dominated the cost
_NOISE = np.random.default_rng(12345).standard_normal((32, SIZE, SIZE, 3), dtype=np.float32)
_ROLES = {"train": 0, **{name: 1 + i for i, name in enumerate(BENCHES)}}


def identity_images(seed: int, role: str, index: int, count: int) -> list[bytes]:
    """The `count` images of identity `index` of population `role` ("train" or a bench name)."""
    rng = np.random.default_rng([seed, _ROLES[role], index])
    ident = _identity(rng)
    nuisance = TRAIN if role == "train" else BENCHES[role]
    return [render(ident, nuisance, rng) for _ in range(count)]


def _identity_job(job: tuple) -> list[bytes]:
    return identity_images(*job)


def _fold_sizes(total: int) -> list[int]:
    return [len(part) for part in np.array_split(np.arange(total), FOLDS)]


def bench_plan(pairs_per_bench: int, seed: int, bench: str):
    """Pairs of (identity, image) indices per fold: ([((id, img), (id, img), same), ...], num_ids)."""
    positives, negatives = _fold_sizes(pairs_per_bench), _fold_sizes(pairs_per_bench)
    ids_per_fold = max(3, math.ceil(max(positives) / 5))
    rng = np.random.default_rng([seed, 100 + _ROLES[bench]])
    plan = []
    for fold in range(FOLDS):
        ids = range(fold * ids_per_fold, (fold + 1) * ids_per_fold)
        same = [((i, a), (i, b)) for i in ids for a, b in itertools.combinations(range(IMAGES_PER_BENCH_ID), 2)]
        diff = [((i, a), (j, b)) for i, j in itertools.combinations(ids, 2)
                for a in range(IMAGES_PER_BENCH_ID) for b in range(IMAGES_PER_BENCH_ID)]
        plan += [(*same[k], True) for k in rng.choice(len(same), positives[fold], replace=False)]
        plan += [(*diff[k], False) for k in rng.choice(len(diff), negatives[fold], replace=False)]
    return plan, FOLDS * ids_per_fold


def _map(jobs: list, workers: int):
    if workers <= 1:
        yield from map(_identity_job, jobs)
        return
    # spawn: the caller may have torch (and its threads) loaded, which fork does not survive well
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_identity_job, jobs, chunksize=4)


def make_demo(out, num_ids: int = 600, images_per_id: int = 50, pairs_per_bench: int = 300, seed: int = 0,
              *, force: bool = False, workers: int | None = None) -> Path:
    """Generate the synthetic dataset into `out` (appears atomically); returns its path."""
    if num_ids < 2 or images_per_id < 2 or pairs_per_bench < FOLDS:
        raise UserError(f"demo data needs num_ids >= 2, images_per_id >= 2 and pairs >= {FOLDS}")
    check_outputs(force, folders={"--out": out})
    if workers is None:
        workers = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
        workers = workers if num_ids * images_per_id >= 5000 else 1  # small sets: spawning costs more
    params = {"num_ids": num_ids, "images_per_id": images_per_id, "pairs_per_bench": pairs_per_bench, "seed": seed}
    benches = {name: bench_plan(pairs_per_bench, seed, name) for name in BENCHES}
    jobs = [(seed, "train", i, images_per_id) for i in range(num_ids)]
    jobs += [(seed, name, i, IMAGES_PER_BENCH_ID) for name, (_, count) in benches.items() for i in range(count)]
    with atomic_path(out) as tmp, contextlib.ExitStack() as stack:
        tmp.mkdir()
        results = stack.enter_context(contextlib.closing(_map(jobs, workers)))
        train = (next(results) for _ in progress(range(num_ids), total=num_ids, desc="demo identities"))
        num_images, _ = emore.write_emore(tmp, train, prefix="train")
        emore.write_property(tmp, num_ids, (SIZE, SIZE))
        for name, (plan, count) in benches.items():
            held_out = [next(results) for _ in range(count)]
            save_bin(tmp / f"{name}.bin", [held_out[i][k] for pair in plan for i, k in pair[:2]],
                     [pair[2] for pair in plan])
        write_text_atomic(tmp / "README.txt", _readme(params, num_images))
        marker = {"format": "facenar-demo", "generator_version": GENERATOR_VERSION, "synthetic": True, **params,
                  "num_images": num_images,
                  "benches": {name: {"pairs": len(plan), "heldout_ids": count, "nuisance": asdict(BENCHES[name])}
                              for name, (plan, count) in benches.items()}}
        write_text_atomic(tmp / MARKER, json.dumps(marker, indent=1) + "\n")
    return Path(out)


def _readme(params: dict, num_images: int) -> str:
    return (
        "SYNTHETIC DEMO DATA - NOT REAL FACES\n\n"
        "Generated by facenar (data_tools.demo) from drawn cartoon faces so that every command has a\n"
        "default dataset. Accuracy on it says nothing about real face recognition.\n\n"
        f"train.rec/train.idx/property: insightface emore layout, {params['num_ids']} identities, "
        f"{num_images} 112x112 JPEG images.\n"
        f"lfw.bin, cfp_fp.bin, agedb_30.bin: {params['pairs_per_bench']} positive + "
        f"{params['pairs_per_bench']} negative pairs each, of held-out identities (not in train),\n"
        "in 10 identity-disjoint folds (per fold: positives, then negatives); cfp_fp has stronger\n"
        "pose (yaw), agedb_30 stronger appearance drift (greying, receding hair, feature jitter).\n"
        f"seed={params['seed']}, generator version {GENERATOR_VERSION}.\n"
    )


def ensure_demo() -> Path:
    """The default demo dataset, generated on first use (or when the generator changed)."""
    return ensure_generated(demo_data_dir(), {"generator_version": GENERATOR_VERSION, **DEFAULTS},
                            lambda folder: make_demo(folder, **DEFAULTS, force=True),
                            "the synthetic demo dataset (well under a minute)")
