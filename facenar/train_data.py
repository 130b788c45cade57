"""The training data order: a resumable DistributedSampler-style split and seeded augmentation.

Both exist so that a run stopped at any step and resumed (on the same or another number of
processes, with any number of DataLoader workers) sees exactly the samples and augmentations an
uninterrupted run would have seen.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data_tools.cli import UserError


def open_train_data(folder: Path, input_size: int, augment: str) -> tuple[Dataset, int]:
    """The training images and the class count, which must agree with the folder's `property`."""
    from data_tools.emore import EmoreDataset
    from facenar.data import RecordFaceDataset

    records = EmoreDataset(folder)
    present = sorted(set(records.labels))
    if present and (present[0] < 0 or present[-1] >= records.num_classes or len(present) != records.num_classes):
        raise UserError(f"{folder}/property says {records.num_classes} classes but train.rec has "
                        f"{len(present)} labelled {present[0]}..{present[-1]}; fix property or rebuild the data")
    return RecordFaceDataset(folder, prefix="train", augment=augment, input_size=input_size), records.num_classes


class EpochSampler(Sampler[int]):
    """DistributedSampler's order (seeded permutation per epoch, rank r takes every W-th index)
    that can start `start` samples into the epoch.

    Global batch k covers permutation positions [k*B, (k+1)*B) for any world size W, so the
    samples already consumed are a prefix of the permutation: a run can resume mid-epoch, even on
    a different number of processes.
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
        return iter(order[self.rank:usable:self.world_size].tolist())

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

    def __getitem__(self, index: int):
        sample_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(sample_seed)
                np.random.seed(sample_seed)
                torch.manual_seed(sample_seed)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def make_loader(samples: SeededSamples, sampler: EpochSampler, batch_size: int, workers: int, pin_memory: bool) -> DataLoader:
    # an own generator: creating the iterator must not draw from the global (checkpointed) RNG
    return DataLoader(samples, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      drop_last=True, pin_memory=pin_memory, generator=torch.Generator())


