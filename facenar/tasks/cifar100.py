"""The cifar100 task: CIFAR-100's official python files (`train`, `test`, `meta`), the 100 `fine_labels`.

Everything but the data is CIFAR-10's task (linear head, cross-entropy, top-1 reward on a held-out
tenth of `train`, top-1/top-5 on `test`, the same recipes as presets, under their own names
--preset cifar100-paper / cifar100-demo): this file names the files, the normalisation and the
--data help, and registers the task. It is the worked example of docs/extending.md.
"""
from __future__ import annotations

from data_tools.cifar import CIFAR100
from facenar.tasks.base import TASKS
from facenar.tasks.classification import Cifar10Task

# per-channel statistics of the 50,000 CIFAR-100 training images
CIFAR100_MEAN, CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)


@TASKS.register("cifar100", summary="CIFAR-100 classification on its 100 fine labels")
class Cifar100Task(Cifar10Task):
    name = "cifar100"
    layout = CIFAR100
    mean, std = CIFAR100_MEAN, CIFAR100_STD
    search_data_help = train_data_help = "cifar-100-python.tar.gz or cifar-100-python/"
