"""Image classification tasks (the paper's Tables 4-5): CIFAR-10 and ImageNet-style folders.

Search: the training split minus a seeded held-out part (5,000 of CIFAR's 50,000) that the
controller is rewarded on (top-1 on a minibatch of it), kept in memory as uint8; a linear head
and cross-entropy. Training: the whole training split, a linear head + cross-entropy whose
gradients DDP averages over ranks like the backbone's. Evaluation: top-1 (and top-5 with more
than 5 classes) on the test split (CIFAR test_batch, the folder's val/), which the search never reads.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facenar_runtime.cli import progress
from data_tools.cifar import CIFAR10
from facenar_runtime.errors import UserError
from facenar.data import epoch_loader, make_loader, random_batch
from facenar.dist import all_reduce_mean, barrier
from facenar.tasks.base import TASKS, Task
from facenar.tasks.classification_data import (CIFAR10_MEAN, CIFAR10_STD, IMAGENET_MEAN, IMAGENET_STD, open_cifar,
                                               open_imagefolder)

CLASSIFIER = "classifier"  # checkpoint key of the head's weights (facenar.evaluate reads it)
# what every classification training preset sets: no gradient clipping, an SGDR floor of 0
CLASSIFICATION = dict(grad_clip=0.0, lr_min=0.0)


class ClassificationTask(Task):
    """What CIFAR-10 and ImageFolder share; a subclass says where data lives and how it opens."""

    title = "classification"
    mean: tuple[float, float, float]  # per-channel normalisation of the training pipeline
    std: tuple[float, float, float]
    test_name: str                     # the split final evaluation reads

    def default_data(self) -> Path:
        """The demo dataset (generated on first use)."""
        raise NotImplementedError

    def open(self, folder: str | Path, split: str, input_size: int | None = None, seed: int = 0):
        """A dataset of `split` (train, search_train, search_val, test) with .classes, .labels, .pixels(i);
        input_size None: only its classes and labels are needed (no check against the network's size)."""
        raise NotImplementedError

    def data_folder(self, data: str | None, ctx=None) -> Path:
        """--data, else the demo data (one rank generates it, the others wait and find it)."""
        if data:
            return Path(data)
        if ctx is None or ctx.is_main:
            self.default_data()
        if ctx is not None:
            barrier(ctx)
        return self.default_data()

    # ----- search
    def search_data(self, cfg) -> "SearchSplit":
        folder = self.data_folder(cfg.data)
        train = self.open(folder, "search_train", cfg.input_size, cfg.seed)
        val = self.open(folder, "search_val", cfg.input_size, cfg.seed)
        return SearchSplit(train, val, self, f"{self.name} {folder}")

    @staticmethod
    def search_head(cfg, num_classes: int) -> nn.Linear:
        return nn.Linear(cfg.embedding_size, num_classes)

    @staticmethod
    def search_loss(cfg):
        return F.cross_entropy

    # ----- training
    def train_data(self, cfg, input_size: int, ctx):
        folder = self.data_folder(cfg.data, ctx)
        dataset = self.open(folder, "train", input_size, cfg.seed)
        self.open(folder, "test")  # a broken test split fails now, before the run directory exists
        return folder, dataset, len(dataset.classes)

    @staticmethod
    def train_head(cfg, embedding_size: int, num_classes: int, ctx) -> "ClassifierHead":
        return ClassifierHead(embedding_size, num_classes, ctx)

    def evaluation(self, cfg, folder: Path) -> "TopK":
        return TopK(self, folder, cfg.workers)

    @staticmethod
    def scored_model(backbone: nn.Module, head: "ClassifierHead") -> nn.Module:
        return nn.Sequential(backbone, head.fc)


@TASKS.register("cifar10", summary="CIFAR-10 classification (the paper's Table 5)")
class Cifar10Task(ClassificationTask):
    name = "cifar10"
    mean, std = CIFAR10_MEAN, CIFAR10_STD
    test_name = "test"
    search_data_help = train_data_help = "cifar-10-python.tar.gz or cifar-10-batches-py/"
    # search demo: a width-0.25 ResNet-18 on the demo CIFAR; from the measured 16.8 ms/image training and
    # 5.7 ms/image scoring (1 thread, load 8): 7,680 training + ~16,000 scored + ~11,000 derivation images,
    # about 5 minutes. Training paper: SGD 0.9, wd 5e-4, batch 128, SGDR T0=10, T_mult=2 over 150 epochs
    # (cycles 10+20+40+80 end together). Demo: CPU-sized, a few minutes on 2 cores; embedding_size =
    # ResNet-18's feature length, 512 x width.
    search_presets = {
        "paper": dict(backbone="resnet18", width=1.0, input_size=32, embedding_size=512),
        "demo": dict(backbone="resnet18", width=0.25, input_size=32, embedding_size=128, epochs=4, pretrain_epochs=1,
                     t0=4, t_mult=1, batch_size=64, steps_per_epoch=30, controller_steps=10, controller_samples=8,
                     controller_lr=5e-3, val_batch=64, derive_samples=10, random_samples=10, population=16,
                     tournament=4, evolution_cycles=80),
    }
    train_presets = {
        "paper": dict(CLASSIFICATION, backbone="resnet18", width=1.0, input_size=32, epochs=150, batch_size=128,
                      lr=0.1, t0=10, t_mult=2, momentum=0.9, weight_decay=5e-4),
        "demo": dict(CLASSIFICATION, backbone="resnet18", width=0.25, input_size=32, embedding_size=128, epochs=3,
                     batch_size=64, lr=0.05, t0=3, t_mult=1, log_every=10, checkpoint_every=200, workers=1),
    }

    layout = CIFAR10  # which CIFAR files (data_tools.cifar): a CIFAR variant is a subclass with its own

    def default_data(self) -> Path:
        from data_tools.cifar_demo import ensure_demo_cifar

        return ensure_demo_cifar(self.layout)

    def open(self, folder, split: str, input_size: int | None = None, seed: int = 0):
        if input_size not in (None, 32):
            raise UserError(f"--task {self.name} needs --input-size 32 (CIFAR images are 32x32), got {input_size}")
        return open_cifar(folder, split, seed=seed, layout=self.layout, mean=self.mean, std=self.std)


@TASKS.register("imagenet", summary="ImageNet-style classification on an ImageFolder tree (train/, val/)")
class ImageNetTask(ClassificationTask):
    name = "imagenet"
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    test_name = "val"
    search_data_help = train_data_help = "the ImageFolder root (train/, val/)"
    # training paper: the standard ResNet-18 recipe with one 90-epoch cosine (SGDR T0=90, no restart) instead
    # of step decay; batch 256 per process, i.e. pass --batch-size 256/N to N processes.
    search_presets = {
        "paper": dict(backbone="resnet18", width=1.0, input_size=224, embedding_size=512),
        "demo": dict(backbone="resnet18", width=0.125, input_size=64, embedding_size=64, epochs=2, pretrain_epochs=1,
                     t0=2, t_mult=1, batch_size=16, controller_steps=3, controller_samples=4, controller_lr=5e-3,
                     val_batch=20, derive_samples=4, random_samples=4, population=8, tournament=3,
                     evolution_cycles=12),
    }
    train_presets = {
        "paper": dict(CLASSIFICATION, backbone="resnet18", width=1.0, input_size=224, epochs=90, batch_size=256,
                      lr=0.1, t0=90, t_mult=1, momentum=0.9, weight_decay=1e-4, workers=8),
        "demo": dict(CLASSIFICATION, backbone="resnet18", width=0.125, input_size=64, embedding_size=64, epochs=2,
                     batch_size=16, lr=0.05, t0=2, t_mult=1, log_every=4, workers=1),
    }

    def default_data(self) -> Path:
        from data_tools.imagefolder import ensure_demo_imagefolder

        return ensure_demo_imagefolder()

    def open(self, folder, split: str, input_size: int | None = None, seed: int = 0):
        return open_imagefolder(folder, split, size=input_size or 224, seed=seed)


class SearchSplit:
    """A search's data: augmented training images and the held-out images in memory as uint8."""

    def __init__(self, train, val, task: ClassificationTask, what: str):
        self.train, self.val, self.what = train, val, what
        self.num_classes = len(train.classes)
        self.mean = torch.tensor(task.mean).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(task.std).view(1, 3, 1, 1) * 255
        self._val: tuple[torch.Tensor, torch.Tensor] | None = None

    def train_loader(self, batch_size: int, seed: int, epoch: int, ctx, workers: int, pin: bool):
        return epoch_loader(self.train, f"the {self.what} search split", batch_size, seed, epoch, ctx, workers, pin)

    def val_set(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Every held-out image (uint8 NCHW) and label on `device`, decoded on first use."""
        if self._val is None:
            rows = progress(range(len(self.val)), total=len(self.val), desc="decode held-out val")
            images = np.stack([self.val.pixels(i) for i in rows]).transpose(0, 3, 1, 2)
            self._val = (torch.from_numpy(np.ascontiguousarray(images)).to(device),
                         torch.as_tensor(np.asarray(self.val.labels), dtype=torch.int64, device=device))
        return self._val

    def val_batch(self, size: int, generator: torch.Generator, device: torch.device):
        return random_batch(*self.val_set(device), size, generator)

    def to_input(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NCHW -> the per-channel normalised float input (as the training pipeline's)."""
        return (images.float() - self.mean.to(images.device)) / self.std.to(images.device)

    def describe(self) -> str:
        return (f"{self.what}: {len(self.train)} search-train images, {len(self.val)} held-out val images, "
                f"{self.num_classes} classes")


class ClassifierHead(nn.Module):
    """Linear classifier + cross-entropy for training. Under torchrun the linear layer is wrapped in
    DDP (gradients averaged over ranks, as the backbone's) and the returned loss shows the global
    mean, so every rank sees the same value and skips a non-finite step together."""

    def __init__(self, features: int, classes: int, ctx):
        super().__init__()
        self.ctx = ctx
        self.fc = nn.Linear(features, classes).to(ctx.device)
        self.net = self.fc
        if ctx.distributed:
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(self.fc, device_ids=ids)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = F.cross_entropy(self.net(features), labels)
        if not self.ctx.distributed:
            return loss
        shown = all_reduce_mean(loss.detach().clone(), self.ctx)
        return loss + (shown - loss.detach())  # the value of the global mean, the gradient of the local loss

    def checkpoint_state(self, optimizer: torch.optim.Optimizer) -> dict:
        """The weights and SGD state on rank 0 (identical on every rank)."""
        if not self.ctx.is_main:
            return {}
        return {CLASSIFIER: self.fc.state_dict(), "classifier_optimizer": optimizer.state_dict()}

    def load_checkpoint_state(self, payload: dict, optimizer: torch.optim.Optimizer) -> None:
        self.fc.load_state_dict(payload[CLASSIFIER])
        optimizer.load_state_dict(payload["classifier_optimizer"])


class TopK:
    """Top-1 (and top-5 with more than 5 classes) in percent on the test split; score = top-1."""

    score_name = "top-1"

    def __init__(self, task: ClassificationTask, folder: Path, workers: int = 0):
        self.task, self.folder, self.workers = task, Path(folder), workers
        self.classes = classes = len(task.open(folder, "test").classes)
        self.ks = (1, 5) if classes > 5 else (1,)
        self.columns = [f"top{k}" for k in self.ks]
        self.available, self.missing = True, None

    def run(self, model: nn.Module, device: str, input_size: int, batch_size: int) -> tuple[dict, dict, float]:
        dataset = self.task.open(self.folder, "test", input_size)
        loader = make_loader(dataset, batch_size, workers=self.workers)
        correct = torch.zeros(len(self.ks), dtype=torch.float64)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for images, labels in progress(loader, total=len(loader), desc=f"evaluate {self.task.test_name}"):
                    best = model(images.to(device)).float().topk(max(self.ks), dim=1).indices.cpu()
                    hits = best == labels[:, None]
                    correct += torch.tensor([hits[:, :k].any(1).sum().item() for k in self.ks], dtype=torch.float64)
        finally:
            model.train(was_training)
        row = {f"top{k}": round(100 * c.item() / len(dataset), 4) for k, c in zip(self.ks, correct)}
        results = {"split": f"{self.folder}:{self.task.test_name}", "images": len(dataset), **row}
        return results, row, row["top1"]

    @staticmethod
    def describe(results: dict, score: float | None = None) -> str:
        """'DATA:split (N images): top-1 x%, top-5 y%' (also the training summary's and facenar.evaluate's line)."""
        return f"{results['split']} ({results['images']} images): " + ", ".join(
            f"top-{k} {results[f'top{k}']:.2f}%" for k in (1, 5) if f"top{k}" in results)
