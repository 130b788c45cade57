"""The synthetic CIFAR-10 / CIFAR-100 stand-ins: drawn shapes in the exact python formats.

It gives `--task cifar10` a default dataset that needs no download and trains in minutes on a
laptop. A class is a shape; pairs of classes share a hue, so colour alone cannot separate them;
every image varies position, scale, rotation, colour, background, clutter and sensor noise, so a
network must learn shapes. Each image draws from its own seeded generator: the files are
byte-identical for a seed. 500 training images per class (5 batches of 1,000) leave 4,500 after
the search's held-out tenth, enough for a 3-layer CNN to reach ~80% in 3 epochs of about half a
minute each on 2 busy cores; 100 per class form the test batch. The CIFAR-100 stand-in
(`cifar-100-python`: train, test, meta; fine and coarse labels) crosses the ten shapes with ten hues:
fine class 10*h + k is shape k in hue h/10, its coarse class (of 20) is the fine one // 5.
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
from data_tools.cifar import CIFAR10, CIFAR100, CifarLayout
from data_tools.cifar_pickle import dumps_py2
from facenar_runtime.errors import UserError
from data_tools.demo_cache import MARKER, ensure_generated
from facenar_runtime.paths import facenar_home

GENERATOR_VERSION = 1
CLASSES = ("disc", "ring", "square", "triangle", "plus", "star", "hbars", "vbars", "crescent", "dots")
HUES = (0.0, 0.6, 0.13, 0.33, 0.8, 0.0, 0.6, 0.13, 0.33, 0.8)  # class k and k+5 share a hue
DEFAULTS = {"train_per_class": 500, "test_per_class": 100, "seed": 0}
DEFAULTS_100 = {"train_per_class": 50, "test_per_class": 10, "seed": 0}  # 5,000 + 1,000 images, as CIFAR-10's demo
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


def class_names(layout: CifarLayout) -> tuple[str, ...]:
    """The demo's class names: the ten shapes, or for CIFAR-100 each shape in each of ten hues."""
    if layout.num_classes == len(CLASSES):
        return CLASSES
    return tuple(f"{CLASSES[label % 10]}_hue{label // 10}" for label in range(layout.num_classes))


def draw(label: int, rng: np.random.Generator, height: int = 32, width: int = 32,
         num_classes: int = len(CLASSES)) -> np.ndarray:
    """One HxWx3 uint8 RGB image of class `label` (of `num_classes`: 10 or 100) under nuisance drawn from `rng`."""
    hue = HUES[label] if num_classes == len(CLASSES) else (label // 10) / 10
    label %= len(CLASSES)
    mask = _mask(label, rng, height, width)
    ramp = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None] * rng.uniform(-0.3, 0.3) \
        + np.linspace(-1, 1, height, dtype=np.float32)[:, None, None] * rng.uniform(-0.3, 0.3)
    background = _rgb(rng.random(), rng.uniform(0, 0.4), rng.uniform(0.15, 0.9)) * (1 + ramp)
    if rng.random() < 0.5:  # clutter: a thin stroke of a random colour
        ends = [tuple(int(v) for v in rng.integers(0, (width, height))) for _ in range(2)]
        cv2.line(background, *ends, _rgb(rng.random(), rng.random(), rng.random()).tolist(),
                 max(1, round(min(height, width) / 32)), cv2.LINE_AA)
    colour = _rgb(hue + rng.normal(0, 0.04), rng.uniform(0.5, 1), rng.uniform(0.45, 1))
    image = background * (1 - mask) + colour * mask
    image += rng.normal(0, rng.uniform(1, 10), image.shape).astype(np.float32)
    return np.clip(image, 0, 255).round().astype(np.uint8)


def draw_split(seed: int, split: int, per_class: int, height: int = 32, width: int = 32,
               num_classes: int = len(CLASSES)):
    """(images [N, H, W, 3] uint8, labels [N]) in a seeded shuffled order; image i has its own generator.

    Seeds are (seed, purpose, split, i) of one length: numpy treats missing trailing words as zeros, so
    keys of different lengths would collide ([0, 0] and [0, 0, 0] give the same stream).
    """
    labels = np.random.default_rng([seed, 0, split, 0]).permutation(np.repeat(np.arange(num_classes), per_class))
    images = np.stack([draw(int(label), np.random.default_rng([seed, 1, split, i]), height, width, num_classes)
                       for i, label in enumerate(labels)])
    return images, labels


def _batch(images: np.ndarray, labels: np.ndarray, batch_label: str, first: int, layout: CifarLayout = CIFAR10) -> bytes:
    """Keys, key order and types as in the official files."""
    names = class_names(layout)
    filenames = [f"{names[label]}_s_{first + i:06d}.png".encode() for i, label in enumerate(labels)]
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    if layout is CIFAR100:
        return dumps_py2({b"filenames": filenames, b"batch_label": batch_label.encode(),
                          b"fine_labels": [int(label) for label in labels],
                          b"coarse_labels": [int(label) // 5 for label in labels], b"data": data})
    return dumps_py2({
        b"batch_label": batch_label.encode(),
        b"labels": [int(label) for label in labels],
        b"data": data,
        b"filenames": filenames,
    })


def make_demo_cifar(out, train_per_class: int = 500, test_per_class: int = 100, seed: int = 0,
                    *, force: bool = False, layout: CifarLayout = CIFAR10) -> Path:
    """Write a synthetic `cifar-10-batches-py` (or, with CIFAR100, `cifar-100-python`) folder to `out` (atomically)."""
    if train_per_class < 1 or test_per_class < 1:
        raise UserError("demo CIFAR needs at least 1 training and 1 test image per class")
    check_outputs(force, folders={"--out": out})
    params = {"train_per_class": train_per_class, "test_per_class": test_per_class, "seed": seed}
    count = layout.num_classes
    train_images, train_labels = draw_split(seed, 0, train_per_class, num_classes=count)
    test_images, test_labels = draw_split(seed, 1, test_per_class, num_classes=count)
    chunks = np.array_split(np.arange(len(train_labels)), len(layout.train))
    names = class_names(layout)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for number, (name, rows) in enumerate(zip(layout.train, chunks), 1):
            label = f"training batch {number} of {len(layout.train)}" if layout is CIFAR10 else "training"
            (tmp / name).write_bytes(_batch(train_images[rows], train_labels[rows], label, int(rows[0]), layout))
        test_label = "testing batch 1 of 1" if layout is CIFAR10 else "testing"
        (tmp / layout.test).write_bytes(_batch(test_images, test_labels, test_label, 0, layout))
        if layout is CIFAR100:
            meta = {b"fine_label_names": [name.encode() for name in names],
                    b"coarse_label_names": [f"group{k}".encode() for k in range(count // 5)]}
        else:
            meta = {b"num_cases_per_batch": len(chunks[0]), b"label_names": [name.encode() for name in names],
                    b"num_vis": 3072}
        (tmp / layout.meta).write_bytes(dumps_py2(meta))
        write_text_atomic(tmp / "README.txt", (
            f"SYNTHETIC DEMO DATA - NOT {layout.name}\n\nDrawn shapes (facenar data_tools.cifar_demo) in the exact\n"
            f"{layout.name} python format: {count} classes ({', '.join(names[:10])}{', ...' if count > 10 else ''}),\n"
            f"{train_per_class} training and {test_per_class} test images per class, seed {seed}, "
            f"generator version {GENERATOR_VERSION}.\n"))
        kind = "cifar10" if layout is CIFAR10 else "cifar100"
        write_text_atomic(tmp / MARKER, json.dumps({"format": f"facenar-demo-{kind}", "synthetic": True,
                                                    "generator_version": GENERATOR_VERSION, **params}) + "\n")
    return Path(out)


def demo_cifar_dir(layout: CifarLayout = CIFAR10) -> Path:
    return facenar_home() / ("demo_cifar10" if layout is CIFAR10 else "demo_cifar100") / layout.folder


def ensure_demo_cifar(layout: CifarLayout = CIFAR10) -> Path:
    """The default demo folder of the layout, generated on first use (or when the generator changed)."""
    defaults = DEFAULTS if layout is CIFAR10 else DEFAULTS_100
    return ensure_generated(demo_cifar_dir(layout), {"generator_version": GENERATOR_VERSION, **defaults},
                            lambda folder: make_demo_cifar(folder, **defaults, force=True, layout=layout),
                            f"the synthetic demo {layout.name} data")
