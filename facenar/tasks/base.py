"""The Task contract and the task registry: what the search and training engines learn on, and how it is scored.

The engines (facenar.search.engine, facenar.train.engine) know networks, optimisers, schedules,
run directories and resume; everything about the *task* comes from a Task object, looked up by the
config's `task` name with get_task(). A task is a Task subclass registered in its own module
(`@TASKS.register("name", summary=...)`, the module named in TASKS' list) and supplies:

  search side
    search_data(cfg)            -> SearchData: .train (Dataset), .num_classes, .train_loader(batch_size,
                                   seed, epoch, ctx, workers, pin), .val_set(device) / .val_batch(size,
                                   generator, device) as uint8 images + labels, .to_input(uint8) -> the
                                   network's float input, .describe() for the run log
    search_head(cfg, classes)   -> nn.Module: backbone features -> logits (argmax = the prediction)
    search_loss(cfg)            -> (logits, labels) -> scalar loss
    reward_correct(logits, labels) -> number of correct predictions (the reward is their fraction)
  training side
    train_data(cfg, input_size, ctx) -> (folder, Dataset, num_classes)
    train_head(cfg, embedding_size, num_classes, ctx) -> nn.Module: forward(features, labels) -> loss,
                                   plus checkpoint_state(optimizer) (collective; a dict on rank 0) and
                                   load_checkpoint_state(payload, optimizer), so any head (sharded or
                                   not) resumes on any number of processes
    evaluation(cfg, folder)     -> Evaluation: .columns (train.csv columns it fills), .available (False:
                                   nothing to evaluate), .missing (a note or None), .run(model, device,
                                   input_size, batch_size) -> (results, row, score), .describe(results,
                                   score) for the log; the best score keeps best.pt
    scored_model(backbone, head) -> the network Evaluation.run scores (face: the backbone's
                                   embeddings; classification: backbone + linear classifier)

  declared as data
    search_options / train_options  config keys only this task reads (given with another --task: refused)
    search_presets / train_presets  {"paper": {...}, "demo": {...}}: the task's preset tables
    search_data_help / train_data_help  what --data is for this task (the CLIs' help is built from them)
    default_search_data() / default_data()  the demo data used without --data (generated on first use)

The face task (facenar.tasks.face) is the first: emore data, ArcFace cosine head + margin
softmax (Partial FC in training), closed-set identification reward on the proxy split, 10-fold
verification on .bin benches. A classification task fits the same slots: features -> nn.Linear
logits, cross-entropy, top-1 on a held-out minibatch as reward, top-1/top-5 on the test split as
its Evaluation (columns top1/top5, score = top-1): facenar.tasks.classification (cifar10, imagenet),
facenar.tasks.cifar100.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from facenar_runtime.errors import UserError
from facenar.config import DEFAULT_TASK, preset_key
from facenar.registry import Registry



class Task:
    """Base of every task: the contract's shared parts (top-1 reward, scored model) and its declared data."""

    name = ""
    title = ""                                  # what a checkpoint of this task is, in messages
    scored_by = "python -m facenar.evaluate"   # the command that scores a trained checkpoint
    search_options: tuple[str, ...] = ()
    train_options: tuple[str, ...] = ()
    search_presets: dict[str, dict] = {}
    train_presets: dict[str, dict] = {}
    train_demo_by_default = True               # without --data and --preset: the demo preset (else the paper's)
    search_data_help = ""
    train_data_help = ""

    @staticmethod
    def reward_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
        """Top-1 correct count: the prediction is the largest logit."""
        return int((logits.argmax(1) == labels).sum())

    @staticmethod
    def scored_model(backbone: torch.nn.Module, head: torch.nn.Module) -> torch.nn.Module:
        return backbone

    def default_data(self):
        """The task's demo dataset folder (generated on first use)."""
        raise NotImplementedError

    def default_search_data(self):
        """What a search reads without --data: the demo dataset unless the task says otherwise."""
        return self.default_data()

    def search_data(self, cfg):
        raise NotImplementedError

    def search_head(self, cfg, num_classes: int):
        raise NotImplementedError

    def search_loss(self, cfg):
        raise NotImplementedError

    def train_data(self, cfg, input_size: int, ctx):
        raise NotImplementedError

    def train_head(self, cfg, embedding_size: int, num_classes: int, ctx):
        raise NotImplementedError

    def evaluation(self, cfg, folder):
        raise NotImplementedError


TASKS: Registry[type[Task]] = Registry("task", modules=("facenar.tasks.face", "facenar.tasks.classification",
                                                        "facenar.tasks.cifar100"))


def check_task_options(task: str, given: Iterable[str], pipeline: str, flag=lambda name: name) -> None:
    """Refuse an option that only other tasks read (`pipeline`: "search" or "train"; `flag`: key -> option)."""
    if task not in TASKS:
        return  # validation names the unknown task
    owners: dict[str, list[str]] = {}
    for name in TASKS:
        for key in getattr(TASKS.get(name), f"{pipeline}_options"):
            owners.setdefault(key, []).append(name)
    mine = getattr(TASKS.get(task), f"{pipeline}_options")
    foreign = [key for key in given if key in owners and key not in mine]
    if foreign:
        raise UserError(f"{flag(foreign[0])} is an option of the {' / '.join(owners[foreign[0]])} task; "
                        f"--task {task} does not use it, drop it")


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return TASKS.get(name)()


def task_help(attribute: str = "") -> str:
    """`name: summary` (or the task's `attribute` text) of every task, for the CLIs' --task / --data help."""
    return "; ".join(f"{name}: {getattr(TASKS.get(name), attribute) if attribute else summary}"
                     for name, summary in TASKS.summaries().items())


def task_presets(pipeline: str) -> dict[str, dict]:
    """Every task's `pipeline` presets as PRESETS entries: the default task's under their own names
    ("paper", "demo"), another task's as "<task>-<name>" that also set the task."""
    found = {}
    for name in TASKS:
        for preset, values in getattr(TASKS.get(name), f"{pipeline}_presets").items():
            found[preset_key(name, preset)] = values if name == DEFAULT_TASK else {"task": name, **values}
    return found
