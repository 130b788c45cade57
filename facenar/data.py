"""Datasets and loaders: emore RecordIO images as tensors (decode, augment, normalise), the
resumable data order (EpochSampler + SeededSamples), the one loader factory, and a search's proxy split.

Augmentation draws its seed from Python's global `random`, which DataLoader seeds per worker and
SeededSamples seeds per sample, so runs are repeatable for any worker count. A stopped run resumed
(on the same or another number of processes) sees exactly the samples an uninterrupted one would.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from facenar_runtime.cli import progress
from facenar_runtime.errors import UserError
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


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 (any shape) -> float32 (x/255 - 0.5) / 0.5, the insightface normalisation."""
    return (images.float() / 255.0 - 0.5) / 0.5


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB -> 3xHxW uint8: a quarter of float32's bytes through the workers' shared memory,
    pinning and the copy to the GPU; `device_input` normalises it on the device."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def device_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A loader's batch on `device` as the network's input: uint8 batches (the face datasets') are
    normalised there; float batches (already normalised by their dataset) pass as they are."""
    images = images.to(device, non_blocking=True)
    return normalize(images) if images.dtype == torch.uint8 else images


def loader_workers(requested: int | None, device: torch.device, cpu_default: int) -> int:
    """--workers, or by default on CUDA the cores per GPU process less one for the process itself
    (at most 8; torchrun's LOCAL_WORLD_SIZE processes share the machine); `cpu_default` on a CPU,
    whose cores the training itself needs."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return cpu_default
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(8, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")) - 1))


class RecordFaceDataset(Dataset):
    """(uint8 image tensor, label) for every image of an emore folder; labels from its identity records.

    `source` is the folder or an already-open EmoreDataset (its index and identity records are then
    not parsed a second time).
    """

    def __init__(self, source, prefix: str = "train", augment: str = "flip",
                 input_size: int | tuple[int, int] | None = None):
        self.records = source if isinstance(source, EmoreDataset) else EmoreDataset(source, prefix)
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
        """(3xHxW uint8 RGB, label); see to_tensor."""
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


def open_train_data(folder: Path, input_size: int, augment: str) -> tuple[Dataset, int]:
    """The training images and the class count, which must agree with the folder's `property`."""
    records = EmoreDataset(folder)
    present = sorted(set(records.labels))
    if present and (present[0] < 0 or present[-1] >= records.num_classes or len(present) != records.num_classes):
        raise UserError(f"{folder}/property says {records.num_classes} classes but train.rec has "
                        f"{len(present)} labelled {present[0]}..{present[-1]}; fix property or rebuild the data")
    return RecordFaceDataset(records, augment=augment, input_size=input_size), records.num_classes


class EpochSampler(Sampler[int]):
    """DistributedSampler's order (seeded permutation per epoch, rank r takes every W-th index)
    that can start `start` samples into the epoch.

    Global batch k covers permutation positions [k*B, (k+1)*B) for any world size W, so the
    samples already consumed are a prefix of the permutation: a run can resume mid-epoch, even on
    a different number of processes. It yields (epoch, index) keys: SeededSamples seeds from the
    key's epoch, which reaches persistent workers (their dataset copy was made once, at the start).
    """

    def __init__(self, size: int, rank: int, world_size: int, seed: int):
        self.size, self.rank, self.world_size, self.seed = size, rank, world_size, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self):
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=gen)[self.start:]
        usable = len(order) - len(order) % self.world_size  # equal shares, so every rank steps alike
        return iter((self.epoch, index) for index in order[self.rank:usable:self.world_size].tolist())

    def __len__(self) -> int:
        return max(0, self.size - self.start) // self.world_size


class SeededSamples(Dataset):
    """dataset[i] with Python, NumPy and torch RNGs seeded from (seed, epoch, i) for the call.

    Augmentation then depends on neither the number of DataLoader workers nor where a run was
    resumed, and the global RNG streams (restored from checkpoints) are left untouched.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]):
        """samples[index] in this object's epoch, or samples[(epoch, index)] (EpochSampler's keys)."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        sample_seed = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(sample_seed)
                np.random.seed(sample_seed)
                torch.default_generator.manual_seed(sample_seed)  # the CPU's only: torch.manual_seed would
                # also reseed every GPU's generator (dropout, Partial FC sampling) with --workers 0
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def make_loader(dataset: Dataset, batch_size: int, *, sampler: Sampler | None = None, shuffle: bool = False,
                seed: int | None = None, workers: int = 0, drop_last: bool = False, pin_memory: bool = False,
                persistent: bool = False) -> DataLoader:
    """The one DataLoader recipe: its own generator (seeded by `seed`) fixes the shuffle order and the
    workers' seeds, and creating an iterator never draws from the global (checkpointed) RNG.
    `persistent` keeps the workers between epochs (with an EpochSampler, which hands them the epoch)."""
    generator = torch.Generator() if seed is None else torch.Generator().manual_seed(seed)
    if workers:
        # one cv2 thread per worker: its pool would only oversubscribe the cores the other workers and the
        # training use (DataLoader gives each worker one torch thread). Set here, before the workers fork,
        # and inherited: cv2.setNumThreads inside a forked worker can deadlock on the parent's pool lock.
        cv2.setNumThreads(1)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=shuffle, num_workers=workers,
                      drop_last=drop_last, pin_memory=pin_memory, generator=generator,
                      persistent_workers=persistent and workers > 0)


def epoch_loader(dataset: Dataset, where: str, batch_size: int, seed: int, epoch: int, ctx, workers: int,
                 pin: bool) -> DataLoader:
    """A search epoch's minibatches: order and augmentation fixed by (seed, epoch), not global RNG."""
    samples = SeededSamples(dataset, seed)
    samples.epoch = epoch
    sampler = EpochSampler(len(dataset), ctx.rank, ctx.world_size, seed)
    sampler.set_epoch(epoch)
    loader = make_loader(samples, batch_size, sampler=sampler, workers=workers, drop_last=True, pin_memory=pin)
    if len(loader) == 0:
        raise UserError(f"{where} has {len(dataset)} images, fewer than one batch of "
                        f"{batch_size} per process; lower --batch-size")
    return loader


def random_batch(images: torch.Tensor, labels: torch.Tensor, size: int, generator: torch.Generator):
    """`size` random (image, label) rows of an in-memory val set, drawn by `generator`."""
    index = torch.randperm(len(labels), generator=generator)[:size].to(labels.device)
    return images[index], labels[index]


class ProxyData:
    """A proxy split folder (train.rec/idx + val.rec/idx + property), validated on open."""

    def __init__(self, folder: str | Path, input_size: int, augment: str = "flip"):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            state = "is not a folder" if self.folder.exists() else "does not exist"
            raise UserError(f"--data {self.folder} {state}; give a proxy split folder "
                            "(python -m facenar.prepare_proxy builds one)")
        for prefix in ("train", "val"):
            missing = [f"{prefix}.{ext}" for ext in ("rec", "idx") if not (self.folder / f"{prefix}.{ext}").is_file()]
            if missing:
                raise UserError(f"{self.folder} is not a proxy split: {', '.join(missing)} missing; "
                                "build one with python -m facenar.prepare_proxy")
        self.train, self.num_classes = open_train_data(self.folder, input_size, augment)
        self.val_records = EmoreDataset(self.folder, prefix="val")  # parsed once, decoded on first use
        val = self.val_records
        bad = sorted({label for label in val.labels if not 0 <= label < self.num_classes})
        if bad:
            raise UserError(f"{self.folder}/val.rec has label {bad[0]} outside 0..{self.num_classes - 1} "
                            f"(the train split's identities); not a proxy split of one dataset")
        self.input_size = input_size
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None

    def train_loader(self, batch_size: int, seed: int, epoch: int, ctx, workers: int, pin: bool):
        return epoch_loader(self.train, f"{self.folder}/train.rec", batch_size, seed, epoch, ctx, workers, pin)

    def val_set(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """All val images (uint8 NCHW) and labels on `device`, decoded on first use."""
        if self._val is None:
            dataset = RecordFaceDataset(self.val_records, augment="none", input_size=self.input_size)
            images, labels = [], []
            for i in progress(range(len(dataset)), total=len(dataset), desc="decode proxy-val"):
                image, label = dataset[i]
                images.append(image)
                labels.append(label)
            self._val = (torch.stack(images).to(device), torch.tensor(labels, device=device))
        return self._val

    @staticmethod
    def to_input(images: torch.Tensor) -> torch.Tensor:
        return normalize(images)

    def describe(self) -> str:
        return f"proxy {self.folder}: {len(self.train)} train images, {self.num_classes} identities"

    def val_batch(self, size: int, generator: torch.Generator, device: torch.device):
        return random_batch(*self.val_set(device), size, generator)
