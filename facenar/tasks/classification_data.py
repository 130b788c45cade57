"""Classification images as training tensors: CIFAR-10 arrays and ImageFolder trees.

Augmentation draws from NumPy's global RNG, which facenar.data.SeededSamples seeds per
(seed, epoch, index), so wrapped in it the crops and flips depend on neither worker count nor
resume point. Pipelines are the standard ones the paper's numbers assume: CIFAR 4-pixel zero pad
+ random 32x32 crop + flip; ImageNet RandomResizedCrop 224 + flip for training, resize 256 +
centre crop 224 for evaluation. cv2/NumPy only (no torchvision).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import os

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from data_tools.cifar import CIFAR10, CifarLayout, default_holdout, holdout_split, load_cifar
from data_tools.imagefolder import (ImageSplit, decode_image, jpeg_size, read_image_bytes, reduction,
                                    scan_imagefolder)

# per-channel statistics of the 50,000 CIFAR-10 training images (pixel std, not the often-quoted 0.2023...)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CIFAR_SPLITS = ("train", "search_train", "search_val", "test")
EVAL_RESIZE = 256 / 224  # evaluation resizes the shorter side to 256 for a 224 centre crop (scaled with the size)


def normalise(image: np.ndarray, mean, std) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32 (x/255 - mean) / std."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)
    return tensor.sub_(torch.tensor(mean).view(3, 1, 1)).div_(torch.tensor(std).view(3, 1, 1))


class CifarImages(Dataset):
    """(normalised image, label) from [N, 32, 32, 3] uint8 arrays, optionally pad-crop-flip augmented."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], augment: bool, pad: int = 4,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD):
        self.images, self.labels, self.classes, self.augment, self.pad = images, labels, classes, augment, pad
        self.mean, self.std = mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def pixels(self, index: int) -> np.ndarray:
        """The un-augmented HxWx3 uint8 image (what the search keeps in memory for its rewards)."""
        return self.images[index]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        if self.augment:
            side, pad = image.shape[0], self.pad
            padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))  # zeros: black, as torchvision pads
            top, left = np.random.randint(0, 2 * pad + 1, 2)
            image = padded[top:top + side, left:left + side]
            if np.random.random() < 0.5:
                image = image[:, ::-1]
        return normalise(image, self.mean, self.std), int(self.labels[index])


def open_cifar(source: str | os.PathLike | None, split: str, *, seed: int = 0, holdout: int | None = None,
               layout: CifarLayout = CIFAR10, mean=CIFAR10_MEAN, std=CIFAR10_STD) -> CifarImages:
    """One split: `train` (all training batches), `search_train` / `search_val` (the seeded hold-out of the
    training batches, default 5,000 of 50,000), `test` (final evaluation only), normalised with the given
    per-channel statistics. No source: the layout's synthetic demo data."""
    if split not in CIFAR_SPLITS:
        raise ValueError(f"split must be one of {CIFAR_SPLITS}, not {split!r}")
    if source is None:
        from data_tools.cifar_demo import ensure_demo_cifar
        source = ensure_demo_cifar(layout)
    data = load_cifar(source, "test" if split == "test" else "train", layout)
    images, labels = data.images, data.labels
    if split.startswith("search_"):
        kept, held = holdout_split(len(labels), default_holdout(len(labels)) if holdout is None else holdout, seed)
        rows = kept if split == "search_train" else held
        images, labels = images[rows], labels[rows]
    return CifarImages(images, labels, data.classes, augment=split in ("train", "search_train"), mean=mean, std=std)


@functools.lru_cache(maxsize=4)
def _scanned(root: str):
    """scan_imagefolder, once per process: walking ImageNet's 1.3M files takes seconds, and a run opens
    its splits several times (training, held-out, every evaluation)."""
    return scan_imagefolder(root)


def open_imagefolder(root: str | os.PathLike, split: str, *, size: int = 224, seed: int = 0,
                     holdout: int | None = None) -> "FolderImages":
    """The splits of open_cifar for an ImageFolder tree: `train` (train/), `search_train` /
    `search_val` (a seeded hold-out of train/), `test` (val/, final evaluation only)."""
    if split not in CIFAR_SPLITS:
        raise ValueError(f"split must be one of {CIFAR_SPLITS}, not {split!r}")
    train, val = _scanned(os.path.abspath(root))
    chosen = val if split == "test" else train
    if split.startswith("search_"):
        count = len(train.paths)
        kept, held = holdout_split(count, default_holdout(count) if holdout is None else holdout, seed)
        rows = kept if split == "search_train" else held
        chosen = dataclasses.replace(train, paths=tuple(train.paths[i] for i in rows), labels=train.labels[rows])
    return FolderImages(chosen, train=split in ("train", "search_train"), size=size,
                        resize=round(size * EVAL_RESIZE))


def random_resized_crop(height: int, width: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(top, left, h, w): a random area fraction and aspect ratio, 10 tries, else the centre crop
    clamped to `ratio` (the Inception-style crop of torchvision's RandomResizedCrop)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * np.random.uniform(*scale)
        aspect = math.exp(np.random.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(np.random.randint(0, height - h + 1)), int(np.random.randint(0, width - w + 1)), h, w
    aspect = width / height
    w, h = (width, round(width / ratio[0])) if aspect < ratio[0] else \
        (round(height * ratio[1]), height) if aspect > ratio[1] else (width, height)
    return (height - h) // 2, (width - w) // 2, h, w


def _resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    shrink = height < image.shape[0] and width < image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


class FolderImages(Dataset):
    """(normalised image, label) of an ImageFolder split; JPEGs decoded at the smallest size that
    still covers the output (1/2, 1/4, 1/8 decoding skips most of the work for large photos)."""

    def __init__(self, split: ImageSplit, train: bool, size: int = 224, resize: int = 256,
                 scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
        self.split, self.train, self.size, self.resize = split, train, size, resize
        self.scale, self.ratio = scale, ratio
        self.classes, self.labels = split.classes, split.labels

    def __len__(self) -> int:
        return len(self.split.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return normalise(self._image(index, self.train), IMAGENET_MEAN, IMAGENET_STD), int(self.labels[index])

    def pixels(self, index: int) -> np.ndarray:
        """The evaluation pipeline's HxWx3 uint8 image (what the search keeps in memory for its rewards)."""
        return self._image(index, train=False)

    def _image(self, index: int, train: bool) -> np.ndarray:
        path = self.split.paths[index]
        data = read_image_bytes(path)
        full = jpeg_size(data)
        image = None if full else decode_image(data, path)  # not a JPEG: size known only after decoding
        height, width = full or image.shape[:2]
        if train:  # the crop is resized to size x size: both of its sides must keep >= size pixels
            top, left, h, w = random_resized_crop(height, width, self.scale, self.ratio)
            factor = reduction(min(h, w), self.size)
        else:
            factor = reduction(min(height, width), self.resize)
        if image is None:
            image = decode_image(data, path, factor)
        sy, sx = image.shape[0] / height, image.shape[1] / width
        if train:
            y0, x0, y1, x1 = round(top * sy), round(left * sx), round((top + h) * sy), round((left + w) * sx)
            image = _resize(image[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)], self.size, self.size)
            if np.random.random() < 0.5:
                image = image[:, ::-1]
        else:
            short = min(image.shape[:2])
            image = _resize(image, round(image.shape[0] * self.resize / short), round(image.shape[1] * self.resize / short))
            top, left = (image.shape[0] - self.size) // 2, (image.shape[1] - self.size) // 2
            image = image[top:top + self.size, left:left + self.size]
        return np.ascontiguousarray(image)
