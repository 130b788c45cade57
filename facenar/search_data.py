"""What the search reads and how it scores: the proxy split (train loader + in-memory val set) and
the reward of an architecture (closed-set accuracy on proxy-val, optionally cost-aware).

The val split is decoded once and kept in memory as uint8, because the controller scores
thousands of architectures per run on it.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import torch

from data_tools.cli import UserError, progress
from facenar.dist import DistContext
from facenar.train_data import EpochSampler, SeededSamples, make_loader, open_train_data

EVAL_CHUNK = 256


class ProxyData:
    """A proxy split folder (train.rec/idx + val.rec/idx + property), validated on open."""

    def __init__(self, folder: str | Path, input_size: int, augment: str = "flip"):
        from data_tools.emore import EmoreDataset

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"--data {self.folder} does not exist; give a proxy split folder "
                            "(python -m facenar.prepare_proxy builds one)")
        for prefix in ("train", "val"):
            missing = [f"{prefix}.{ext}" for ext in ("rec", "idx") if not (self.folder / f"{prefix}.{ext}").is_file()]
            if missing:
                raise UserError(f"{self.folder} is not a proxy split: {', '.join(missing)} missing; "
                                "build one with python -m facenar.prepare_proxy")
        self.train, self.num_classes = open_train_data(self.folder, input_size, augment)
        val = EmoreDataset(self.folder, prefix="val")
        bad = sorted({label for label in val.labels if not 0 <= label < self.num_classes})
        if bad:
            raise UserError(f"{self.folder}/val.rec has label {bad[0]} outside 0..{self.num_classes - 1} "
                            f"(the train split's identities); not a proxy split of one dataset")
        self.input_size = input_size
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None

    def train_loader(self, batch_size: int, seed: int, epoch: int, ctx: DistContext, workers: int, pin: bool):
        """This epoch's minibatches: order and augmentation fixed by (seed, epoch), not global RNG."""
        samples = SeededSamples(self.train, seed)
        samples.epoch = epoch
        sampler = EpochSampler(len(self.train), ctx.rank, ctx.world_size, seed)
        sampler.set_epoch(epoch)
        loader = make_loader(samples, sampler, batch_size, workers, pin)
        if len(loader) == 0:
            raise UserError(f"{self.folder}/train.rec has {len(self.train)} images, fewer than one batch of "
                            f"{batch_size} per process; lower --batch-size")
        return loader

    def val_set(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """All val images (uint8 NCHW) and labels on `device`, decoded on first use."""
        if self._val is None:
            from facenar.data import RecordFaceDataset

            dataset = RecordFaceDataset(self.folder, prefix="val", augment="none", input_size=self.input_size)
            images, labels = [], []
            for i in progress(range(len(dataset)), total=len(dataset), desc="decode proxy-val"):
                image, label = dataset[i]
                images.append(((image * 0.5 + 0.5) * 255).round().to(torch.uint8))  # exact inverse
                labels.append(label)
            self._val = (torch.stack(images).to(device), torch.tensor(labels, device=device))
        return self._val

    def val_batch(self, size: int, generator: torch.Generator, device: torch.device):
        images, labels = self.val_set(device)
        index = torch.randperm(len(labels), generator=generator)[:size].to(device)
        return images[index], labels[index]


def macs_model(space):
    """codes -> multiply-adds without building a network: slot costs add up (ops keep shapes)."""
    from facenar.cost import count_cost

    uniform = [count_cost(space.with_codes([op] * space.num_slots)) for op in range(len(space.candidates))]
    fixed = uniform[0].macs - sum(row["macs"] for row in uniform[0].per_slot)
    per_slot = [[report.per_slot[slot]["macs"] for report in uniform] for slot in range(space.num_slots)]
    return lambda codes: fixed + sum(per_slot[slot][code] for slot, code in enumerate(codes))


def latency_model(table_path: str, space):
    """codes -> predicted milliseconds from a latency table measured for this search space."""
    from facenar.latency import latency_cost, load_latency_table

    table = load_latency_table(table_path)
    try:
        latency_cost(table, space)
    except ValueError as exc:
        raise UserError(f"--latency-table {table_path}: {exc}; measure one for this search space with "
                        "python -m facenar.arch latency") from None
    order = [table["candidates"].index(name) for name in space.candidates]
    return lru_cache(maxsize=None)(lambda codes: latency_cost(table, [order[c] for c in codes]))


def to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> the network's (x/255 - 0.5) / 0.5, the same arithmetic as facenar.data."""
    return (images.float() / 255.0 - 0.5) / 0.5


class RewardModel:
    """Reward of an architecture with the current shared weights: accuracy, times a cost factor.

    `engine` is the NarSearch whose supernet, head, proxy data and autocast are used.
    """

    def __init__(self, engine, space, cfg):
        self.engine, self.weight, self.bn = engine, cfg.cost_weight, cfg.reward_bn
        self.target, self.cost = None, None
        if cfg.cost == "latency" and cfg.target_latency:
            self.target, self.cost = cfg.target_latency, latency_model(cfg.latency_table, space)
        elif cfg.cost == "macs" and cfg.target_macs:
            self.target, self.cost = cfg.target_macs, macs_model(space)

    def shape(self, accuracy: float, codes) -> float:
        """MnasNet's soft constraint: acc * (cost / target) ** w, applied only above the target."""
        if self.target is None:
            return accuracy
        cost = self.cost(tuple(codes))
        return accuracy * (cost / self.target) ** self.weight if cost > self.target else accuracy

    @torch.no_grad()
    def accuracy(self, codes, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Closed-set identification: argmax of the cosine logits over the proxy identities.

        BN uses each chunk's own statistics ("batch", as ENAS scores its children; the running
        averages are restored afterwards) or the running averages ("eval"), which in a supernet mix
        every op's output statistics and, measured on the demo, rank architectures mostly by noise.
        """
        net, head = self.engine.supernet, self.engine.head
        saved = [buf.clone() for buf in net.buffers()] if self.bn == "batch" else []
        net.train(self.bn == "batch")
        correct = 0
        try:
            for chunk in torch.arange(len(labels), device=labels.device).tensor_split(
                    math.ceil(len(labels) / EVAL_CHUNK)):  # near-equal chunks: no tiny last batch
                with self.engine.autocast():
                    cosine = head(net(to_input(images[chunk]), list(codes)))
                correct += int((cosine.argmax(1) == labels[chunk]).sum())
        finally:
            for buf, value in zip(net.buffers(), saved):
                buf.copy_(value)
            net.train()
        return correct / len(labels)

    def batch(self, batch_codes, images, labels) -> list[float]:
        return [self.shape(self.accuracy(codes, images, labels), codes) for codes in batch_codes]

    def accuracy_full(self, codes) -> float:
        return self.accuracy(codes, *self.engine.data.val_set(self.engine.device))

    def full(self, codes) -> float:
        return self.shape(self.accuracy_full(codes), codes)
