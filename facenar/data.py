"""Face images of an emore RecordIO folder as training tensors: decode, augment, normalise.

Augmentation draws its seed from Python's global `random`, which DataLoader seeds per worker and
facenar.train_data.SeededSamples seeds per sample, so runs are repeatable for any worker count.
"""
from __future__ import annotations

import os
import random

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from data_tools.cli import UserError
from data_tools.emore import EmoreDataset

AUGMENTS = ("none", "flip", "strong")


def decode_image(data: bytes, where: str = "image") -> np.ndarray:
    """Encoded bytes (JPEG/PNG/...) -> HxWx3 uint8 RGB."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR_RGB) if buffer.size else None
    if image is None:
        raise UserError(f"{where}: cannot decode the image ({len(data)} bytes); the record is "
                        f"corrupt or not an image (python -m data_tools.inspect --verify-images "
                        f"lists every such key)")
    return image


def build_augment(kind: str):
    """`flip` = horizontal flip (the insightface default); `strong` adds photometric/geometric noise."""
    if kind not in AUGMENTS:
        raise UserError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTS)}")
    if kind == "none":
        return None
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A

    steps = [A.HorizontalFlip(p=0.5)]
    if kind == "strong":
        steps += [
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.Affine(scale=(0.95, 1.05), translate_percent=(-0.04, 0.04), rotate=(-8, 8),
                     border_mode=cv2.BORDER_REPLICATE, p=0.5),
            A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.3, 1.2), p=0.2),
            A.ImageCompression(quality_range=(40, 95), p=0.3),
        ]
    return A.Compose(steps)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW float32 (x/255 - 0.5) / 0.5, the insightface normalisation."""
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
    return tensor.div_(255.0).sub_(0.5).div_(0.5)


class RecordFaceDataset(Dataset):
    """(image tensor, label) for every image of an emore folder; labels from its identity records."""

    def __init__(self, folder, prefix: str = "train", augment: str = "flip",
                 input_size: int | tuple[int, int] | None = None):
        self.records = EmoreDataset(folder, prefix)
        self.keys = self.records.image_keys
        self.targets = self.records.image_labels()
        if input_size is None:
            input_size = self.records.image_size
        elif isinstance(input_size, int):
            input_size = (input_size, input_size)
        self.size = tuple(int(side) for side in input_size)  # (height, width)
        self.augment = build_augment(augment)

    def __len__(self) -> int:
        return int(self.keys.size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        key = int(self.keys[index])
        image = decode_image(self.records.read_image(key), f"{self.records.reader.rec_path} key {key}")
        if image.shape[:2] != self.size:
            shrink = image.shape[0] > self.size[0]
            image = cv2.resize(image, self.size[::-1],
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if self.augment is not None:
            self.augment.set_random_seed(random.getrandbits(32))
            image = self.augment(image=image)["image"]
        return to_tensor(image), int(self.targets[index])


def seeded_loader(dataset: Dataset, batch_size: int, *, seed: int = 0, shuffle: bool = True,
                  workers: int = 0, drop_last: bool = False) -> DataLoader:
    """A DataLoader whose order and per-worker augmentation seeds follow `seed`.

    With workers=0 augmentation draws from the caller's global `random` (seed that, or use
    facenar.train_data.SeededSamples, for repeatable augmentation).
    """
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      drop_last=drop_last, generator=torch.Generator().manual_seed(seed))
