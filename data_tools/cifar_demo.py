"""The synthetic CIFAR-10 stand-in: drawn shapes in the exact `cifar-10-batches-py` format.

It gives `--task cifar10` a default dataset that needs no download and trains in minutes on a
laptop. A class is a shape; pairs of classes share a hue, so colour alone cannot separate them;
every image varies position, scale, rotation, colour, background, clutter and sensor noise, so a
network must learn shapes. Each image draws from its own seeded generator: the files are
byte-identical for a seed. 500 training images per class (5 batches of 1,000) leave 4,500 after
the search's held-out tenth, enough for a 3-layer CNN to reach ~80% in 3 epochs of about half a
minute each on 2 busy cores; 100 per class form the test batch.
"""
from __future__ import annotations

import colorsys
import json
import math
from pathlib import Path

import cv2
import numpy as np

from facenar_runtime.atomic import atomic_path, write_text_atomic
from facenar_runtime.outputs import check_outputs
from data_tools.cifar import FOLDER, META, TEST_BATCH, TRAIN_BATCHES
from data_tools.cifar_pickle import dumps_py2
from facenar_runtime.errors import UserError
from data_tools.demo_cache import MARKER, ensure_generated
from facenar_runtime.paths import facenar_home

GENERATOR_VERSION = 1
CLASSES = ("disc", "ring", "square", "triangle", "plus", "star", "hbars", "vbars", "crescent", "dots")
HUES = (0.0, 0.6, 0.13, 0.33, 0.8, 0.0, 0.6, 0.13, 0.33, 0.8)  # class k and k+5 share a hue
DEFAULTS = {"train_per_class": 500, "test_per_class": 100, "seed": 0}
SUPERSAMPLE = 4  # shapes are drawn at 4x and area-averaged down: smooth edges, like CIFAR's downscaled photos


def _polygons(label: int) -> list[np.ndarray]:
    """The class's filled polygons in unit coordinates (centre 0, radius about 1)."""
    def regular(corners: int, radius=1.0, phase=-math.pi / 2):
        angles = phase + 2 * math.pi * np.arange(corners) / corners
        return np.stack([np.cos(angles), np.sin(angles)], 1) * np.asarray(radius)[..., None]
    name = CLASSES[label]
    if name == "square":
        return [regular(4, 0.95, math.pi / 4)]
    if name == "triangle":
        return [regular(3, 1.1) + [0, 0.2]]
    if name == "plus":
        a, b = 0.32, 1.0
        return [np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a],
                          [-b, a], [-b, -a], [-a, -a]])]
    if name == "star":
        return [regular(10, np.tile([1.1, 0.45], 5))]
    if name in ("hbars", "vbars"):
        bars = [np.array([[-1, y - 0.18], [1, y - 0.18], [1, y + 0.18], [-1, y + 0.18]]) for y in (-0.7, 0, 0.7)]
        return bars if name == "hbars" else [bar[:, ::-1] for bar in bars]
    raise AssertionError(name)


def _mask(label: int, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The shape's coverage in [0, 1], drawn at SUPERSAMPLE x the output size and area-averaged down."""
    h, w = height * SUPERSAMPLE, width * SUPERSAMPLE
    mask = np.zeros((h, w), np.uint8)
    side = min(h, w)
    radius = side * rng.uniform(0.22, 0.4)
    centre = np.array([w, h]) / 2 + rng.uniform(-0.16, 0.16, 2) * side
    angle = rng.uniform(-0.35, 0.35)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    place = lambda points: np.round(points @ rotation.T * radius + centre).astype(np.int32)
    name = CLASSES[label]
    c, r = tuple(int(v) for v in np.round(centre)), int(round(radius))
    if name == "disc":
        cv2.circle(mask, c, r, 255, -1, cv2.LINE_AA)
    elif name == "ring":
        cv2.circle(mask, c, int(r * 0.8), 255, max(2, int(r * 0.35)), cv2.LINE_AA)
    elif name == "crescent":
        cv2.circle(mask, c, r, 255, -1, cv2.LINE_AA)
        cv2.circle(mask, tuple(place(np.array([0.55, -0.25]))), int(r * 0.85), 0, -1, cv2.LINE_AA)
    elif name == "dots":
        for x in (-0.6, 0.6):
            cv2.circle(mask, tuple(place(np.array([x, 0.0]))), int(r * 0.42), 255, -1, cv2.LINE_AA)
    else:
        cv2.fillPoly(mask, [place(points) for points in _polygons(label)], 255, cv2.LINE_AA)
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)[..., None] / 255


def _rgb(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value), np.float32) * 255


def draw(label: int, rng: np.random.Generator, height: int = 32, width: int = 32) -> np.ndarray:
    """One HxWx3 uint8 RGB image of class `label` under nuisance drawn from `rng`."""
    mask = _mask(label, rng, height, width)
    ramp = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None] * rng.uniform(-0.3, 0.3) \
        + np.linspace(-1, 1, height, dtype=np.float32)[:, None, None] * rng.uniform(-0.3, 0.3)
    background = _rgb(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.15, 0.9)) * (1 + ramp)
    if rng.random() < 0.5:  # clutter: a thin stroke of a random colour
        ends = [tuple(int(v) for v in rng.integers(0, (width, height))) for _ in range(2)]
        cv2.line(background, *ends, _rgb(rng.random(), rng.random(), rng.random()).tolist(),
                 max(1, round(min(height, width) / 32)), cv2.LINE_AA)
    colour = _rgb(HUES[label] + rng.normal(0, 0.04), rng.uniform(0.5, 1), rng.uniform(0.45, 1))
    image = background * (1 - mask) + colour * mask
    image += rng.normal(0, rng.uniform(1, 10), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).round().astype(np.uint8)


def draw_split(seed: int, split: int, per_class: int, height: int = 32, width: int = 32):
    """(images [N, H, W, 3] uint8, labels [N]) in a seeded shuffled order; image i has its own generator.

    Seeds are (seed, purpose, split, i) of one length: numpy treats missing trailing words as zeros, so
    keys of different lengths would collide ([0, 0] and [0, 0, 0] give the same stream).
    """
    labels = np.random.default_rng([seed, 0, split, 0]).permutation(np.repeat(np.arange(len(CLASSES)), per_class))
    images = np.stack([draw(int(label), np.random.default_rng([seed, 1, split, i]), height, width)
                       for i, label in enumerate(labels)])
    return images, labels


def _batch(images: np.ndarray, labels: np.ndarray, batch_label: str, first: int) -> bytes:
    """Keys, key order and types as in the official files."""
    return dumps_py2({
        b"batch_label": batch_label.encode(),
        b"labels": [int(label) for label in labels],
        b"data": images.transpose(0, 3, 1, 2).reshape(len(images), -1),
        b"filenames": [f"{CLASSES[label]}_s_{first + i:06d}.png".encode() for i, label in enumerate(labels)],
    })


def make_demo_cifar(out, train_per_class: int = 500, test_per_class: int = 100, seed: int = 0,
                    *, force: bool = False) -> Path:
    """Write a synthetic `cifar-10-batches-py` folder to `out` (appears atomically)."""
    if train_per_class < 1 or test_per_class < 1:
        raise UserError("demo CIFAR needs at least 1 training and 1 test image per class")
    check_outputs(force, folders={"--out": out})
    params = {"train_per_class": train_per_class, "test_per_class": test_per_class, "seed": seed}
    train_images, train_labels = draw_split(seed, 0, train_per_class)
    test_images, test_labels = draw_split(seed, 1, test_per_class)
    chunks = np.array_split(np.arange(len(train_labels)), len(TRAIN_BATCHES))
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for number, (name, rows) in enumerate(zip(TRAIN_BATCHES, chunks), 1):
            (tmp / name).write_bytes(_batch(train_images[rows], train_labels[rows],
                                            f"training batch {number} of {len(TRAIN_BATCHES)}", int(rows[0])))
        (tmp / TEST_BATCH).write_bytes(_batch(test_images, test_labels, "testing batch 1 of 1", 0))
        (tmp / META).write_bytes(dumps_py2({b"num_cases_per_batch": len(chunks[0]),
                                            b"label_names": [name.encode() for name in CLASSES],
                                            b"num_vis": 3072}))
        write_text_atomic(tmp / "README.txt", (
            "SYNTHETIC DEMO DATA - NOT CIFAR-10\n\nDrawn shapes (facenar data_tools.cifar_demo) in the exact\n"
            f"CIFAR-10 python format: {len(CLASSES)} classes ({', '.join(CLASSES)}),\n"
            f"{train_per_class} training and {test_per_class} test images per class, seed {seed}, "
            f"generator version {GENERATOR_VERSION}.\n"))
        write_text_atomic(tmp / MARKER, json.dumps({"format": "facenar-demo-cifar10", "synthetic": True,
                                                    "generator_version": GENERATOR_VERSION, **params}) + "\n")
    return Path(out)


def demo_cifar_dir() -> Path:
    return facenar_home() / "demo_cifar10" / FOLDER


def ensure_demo_cifar() -> Path:
    """The default demo `cifar-10-batches-py` folder, generated on first use (or when the generator changed)."""
    return ensure_generated(demo_cifar_dir(), {"generator_version": GENERATOR_VERSION, **DEFAULTS},
                            lambda folder: make_demo_cifar(folder, **DEFAULTS, force=True),
                            "the synthetic demo CIFAR-10 data")
