"""ImageFolder trees (`train/<class>/*.JPEG`, `val/<class>/*.JPEG`) and a fast JPEG decoder.

Class indices come from the sorted class folders of `train`, so `val` must not add classes.
Decoding is most of the cost of ImageNet-scale loading; libjpeg can decode straight to 1/2, 1/4
or 1/8 size (IMREAD_REDUCED_*) for far less work than a full decode, so callers ask for the
largest reduction that still leaves as many pixels as their crop needs (see reduction and decode_image).
Images are decoded without applying EXIF rotation, as PIL-based loaders do.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facenar_runtime.atomic import atomic_path, write_text_atomic
from facenar_runtime.outputs import check_outputs
from facenar_runtime.errors import UserError
from data_tools.demo_cache import MARKER, ensure_generated
from facenar_runtime.paths import facenar_home

EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
REDUCED = {1: 0, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
           8: cv2.IMREAD_REDUCED_GRAYSCALE_8}  # the reduction bits; IMREAD_COLOR_RGB makes them colour
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


@dataclass(frozen=True)
class ImageSplit:
    root: Path
    classes: tuple[str, ...]
    paths: tuple[Path, ...]
    labels: np.ndarray  # int64 class index per path


def scan_split(folder: str | os.PathLike, classes: tuple[str, ...] | None = None) -> ImageSplit:
    """Every image under folder/<class>/ (recursively, extensions case-insensitive), sorted.

    `classes` None: the split defines them (its sorted subfolders); otherwise the split's folders
    must be among them (a val class that train lacks has no output unit).
    """
    root = Path(folder)
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; expected an ImageFolder split with one subfolder per class")
    present = tuple(sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith(".")))
    if classes is None:
        classes = present
        if not classes:
            raise UserError(f"{root} has no class subfolders; expected {root}/<class>/<image>.JPEG")
    unknown = sorted(set(present) - set(classes))
    if unknown:
        raise UserError(f"{root} has class folder(s) {', '.join(unknown[:5])}"
                        f"{' ...' if len(unknown) > 5 else ''} that the training split lacks; remove them "
                        "or add them to train")
    index = {name: i for i, name in enumerate(classes)}
    paths, labels = [], []
    # links are followed (shards on other disks), but each directory is visited once: a link back
    # to the root or into another class would repeat and mislabel images, two loops never end
    visited = {_identity(root), *(_identity(root / name) for name in present)}
    for name in present:
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            dirnames[:] = _unvisited(dirpath, sorted(dirnames), visited)
            for filename in sorted(filenames):
                if filename.lower().endswith(EXTENSIONS) and not filename.startswith("."):
                    paths.append(Path(dirpath) / filename)
                    labels.append(index[name])
    if not paths:
        raise UserError(f"{root} holds no images ({', '.join(EXTENSIONS)})")
    return ImageSplit(root, classes, tuple(paths), np.asarray(labels, np.int64))


def _identity(path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _unvisited(parent: str, names: list[str], visited: set) -> list[str]:
    """The subfolders of `parent` not seen before (now marked seen); broken links are skipped."""
    kept = []
    for name in names:
        try:
            key = _identity(os.path.join(parent, name))
        except OSError:
            continue
        if key not in visited:
            visited.add(key)
            kept.append(name)
    return kept


def scan_imagefolder(root: str | os.PathLike) -> tuple[ImageSplit, ImageSplit]:
    """(train, val) of an ImageFolder tree; val's labels use train's class indices."""
    root = Path(root)
    train = scan_split(root / "train")
    return train, scan_split(root / "val", train.classes)


def jpeg_size(data) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header (bytes or uint8 array) without decoding, or None."""
    data = bytes(data[:1 << 16])  # the frame header follows the (small) metadata segments
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 9 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _SOF:
            return int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 7:pos + 9], "big")
        pos += 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
    return None


def reduction(available: int, needed: int) -> int:
    """The largest of 1, 2, 4, 8 that keeps at least `needed` of `available` pixels."""
    return max(factor for factor in REDUCED if factor == 1 or available // factor >= needed)


def read_image_bytes(path: str | os.PathLike) -> np.ndarray:
    try:
        return np.fromfile(path, np.uint8)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def decode_image(data: np.ndarray, where, factor: int = 1) -> np.ndarray:
    """HxWx3 uint8 RGB of encoded bytes, JPEGs decoded at 1/factor size (sides rounded up)."""
    flags = REDUCED[factor] | cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(data, flags) if data.size else None
    if image is None:
        raise UserError(f"{where}: cannot decode the image ({data.size} bytes); it is corrupt or not an image, "
                        "replace or remove it")
    return image


# ---- the tiny synthetic tree for tests and the --task imagenet demo ----
DEMO_VERSION = 1
DEMO_DEFAULTS = {"train_per_class": 20, "val_per_class": 5, "seed": 0}


def make_demo_imagefolder(out, train_per_class: int = 20, val_per_class: int = 5, seed: int = 0,
                          *, force: bool = False) -> Path:
    """The demo CIFAR shapes as JPEGs of varying sizes (48..200 px a side) in an ImageFolder tree."""
    from data_tools.cifar_demo import CLASSES, draw

    check_outputs(force, folders={"--out": out})
    with atomic_path(out) as tmp:
        for split, count in (("train", train_per_class), ("val", val_per_class)):
            for label, name in enumerate(CLASSES):
                (tmp / split / name).mkdir(parents=True)
                for i in range(count):
                    rng = np.random.default_rng([seed, 2, split == "val", label, i])  # (cf. cifar_demo.draw_split)
                    height, width = (int(side) for side in rng.integers(48, 201, 2))
                    image = draw(label, rng, height, width)
                    ext = (".JPEG", ".jpg", ".jpeg")[i % 3]  # the spellings found in the wild
                    ok, data = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
                    (tmp / split / name / f"{name}_{i:04d}{ext}").write_bytes(data.tobytes())
        write_text_atomic(tmp / MARKER, json.dumps({"format": "facenar-demo-imagefolder", "synthetic": True,
                                                    "generator_version": DEMO_VERSION, "train_per_class": train_per_class,
                                                    "val_per_class": val_per_class, "seed": seed}) + "\n")
    return Path(out)


def ensure_demo_imagefolder() -> Path:
    """The default demo ImageFolder tree (10 classes x 20 train + 5 val JPEGs), generated on first use."""
    return ensure_generated(facenar_home() / "demo_imagefolder", {"generator_version": DEMO_VERSION, **DEMO_DEFAULTS},
                            lambda folder: make_demo_imagefolder(folder, **DEMO_DEFAULTS, force=True),
                            "the synthetic demo ImageFolder tree")
