"""The cifar100 task: CIFAR-100's official python files (`train`, `test`, `meta`), the 100 `fine_labels`.

Everything but the data is the classification task's (linear head, cross-entropy, top-1 reward on a
held-out tenth of `train`, top-1/top-5 on `test`): this file says where the data lives, how it opens
and which presets fit it, and registers the task. It is the worked example of docs/extending.md.
"""
from __future__ import annotations

from pathlib import Path

from data_tools.cifar import CIFAR100
from facenar_runtime.errors import UserError
from facenar.tasks.base import TASKS
from facenar.tasks.classification import CLASSIFICATION, ClassificationTask
from facenar.tasks.classification_data import open_cifar

# per-channel statistics of the 50,000 CIFAR-100 training images
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


@TASKS.register("cifar100", summary="CIFAR-100 classification on its 100 fine labels")
class Cifar100Task(ClassificationTask):
    name = "cifar100"
    mean, std = CIFAR100_MEAN, CIFAR100_STD
    test_name = "test"
    search_data_help = train_data_help = "cifar-100-python.tar.gz or cifar-100-python/"
    # paper: CIFAR-10's recipe (ResNet-18 with the CIFAR stem, SGDR 10+20+40+80 epochs). demo: the demo set
    # is 50 training images per class, so a wider net and more epochs than CIFAR-10's demo, still minutes.
    search_presets = {
        "paper": dict(backbone="resnet18", width=1.0, input_size=32, embedding_size=512),
        "demo": dict(backbone="resnet18", width=0.25, input_size=32, embedding_size=128, epochs=4, pretrain_epochs=1,
                     t0=4, t_mult=1, batch_size=64, steps_per_epoch=30, controller_steps=10, controller_samples=8,
                     controller_lr=5e-3, val_batch=64, derive_samples=10, random_samples=10),
    }
    train_presets = {
        "paper": dict(CLASSIFICATION, backbone="resnet18", width=1.0, input_size=32, epochs=150, batch_size=128,
                      lr=0.1, t0=10, t_mult=2, momentum=0.9, weight_decay=5e-4),
        "demo": dict(CLASSIFICATION, backbone="resnet18", width=0.25, input_size=32, embedding_size=128, epochs=3,
                     batch_size=64, lr=0.05, t0=3, t_mult=1, log_every=10, checkpoint_every=200, workers=1),
    }

    def default_data(self) -> Path:
        from data_tools.cifar_demo import ensure_demo_cifar

        return ensure_demo_cifar(CIFAR100)

    def open(self, folder, split: str, input_size: int | None = None, seed: int = 0):
        if input_size not in (None, 32):
            raise UserError(f"--task cifar100 needs --input-size 32 (CIFAR images are 32x32), got {input_size}")
        return open_cifar(folder, split, seed=seed, layout=CIFAR100, mean=self.mean, std=self.std)
