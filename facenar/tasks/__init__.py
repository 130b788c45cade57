"""Tasks: what the search and training engines learn on, and how it is scored.

The engines (facenar.search.engine, facenar.train.engine) know networks, optimisers, schedules,
run directories and resume; everything about the *task* comes from a Task object, looked up by the
config's `task` name with get_task(). A task supplies:

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

Options that only one task reads are refused for the others (check_task_options).

The face task (facenar.tasks.face) is the first: emore data, ArcFace cosine head + margin
softmax (Partial FC in training), closed-set identification reward on the proxy split, 10-fold
verification on .bin benches. A classification task fits the same slots: features -> nn.Linear
logits, cross-entropy, top-1 on a held-out minibatch as reward, top-1/top-5 on the test split as
its Evaluation (columns top1/top5, score = top-1): facenar.tasks.classification (cifar10, imagenet).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from facenar_runtime.errors import UserError

TASKS = ("face", "cifar10", "imagenet")


class Task:
    """Base of every task: the shared reward metric (top-1) and the name; the rest is per task."""

    name = ""

    @staticmethod
    def reward_correct(logits: torch.Tensor, labels: torch.Tensor) -> int:
        """Top-1 correct count: the prediction is the largest logit."""
        return int((logits.argmax(1) == labels).sum())

    @staticmethod
    def scored_model(backbone: torch.nn.Module, head: torch.nn.Module) -> torch.nn.Module:
        return backbone


def check_task_options(task: str, given: Iterable[str], face_only: dict[str, str]) -> None:
    """Refuse an option (config key -> its flag in face_only) that only the face task reads."""
    foreign = [face_only[name] for name in given if name in face_only]
    if task != "face" and foreign:
        raise UserError(f"{foreign[0]} is an option of the face task; --task {task} does not use it, drop it")


def get_task(name: str) -> Task:
    if name == "face":
        from facenar.tasks.face import FaceTask

        return FaceTask()
    if name in ("cifar10", "imagenet"):
        from facenar.tasks.classification import Cifar10Task, ImageNetTask

        return Cifar10Task() if name == "cifar10" else ImageNetTask()
    raise UserError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
