"""python -m facenar.evaluate: top-1 (and top-5) of a classification checkpoint on its test split.

A checkpoint written by `python -m facenar.train --task cifar10|imagenet` (last.pt or best.pt)
carries the backbone's architecture and weights, the linear classifier and the run's config (task
and data); the test split is CIFAR-10's test_batch or the ImageFolder's val/, never seen by the
search. Face checkpoints are scored by verification instead (python -m facenar.verify).
"""
from __future__ import annotations

import argparse
import json
from typing import Sequence

import torch
from torch import nn

from facenar_runtime.atomic import write_text_atomic
from facenar_runtime.cli import number, run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import check_outputs
from facenar.checkpoint import load_model
from facenar.dist import resolve_device, device_option
from facenar.config import DEFAULT_TASK
from facenar.tasks.base import get_task
from facenar_runtime import limits
from facenar.speed import Fast, add_speed_options
from facenar.tasks.classification import CLASSIFIER, ClassificationTask, TopK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m facenar.evaluate",
                                description="Top-1 / top-5 accuracy of a classification checkpoint on a test split.")
    p.add_argument("--model", required=True, metavar="CHECKPOINT", help="last.pt or best.pt of a classification run")
    p.add_argument("--data", metavar="DIR", help="dataset holding the test split (default: the run's own data)")
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    p.add_argument("--force", action="store_true", help="overwrite --json OUT")
    p.add_argument("--batch-size", type=number(int, min=1, max=limits.BATCH), default=256, help="(default 256)")
    p.add_argument("--workers", type=number(int, min=0, max=limits.WORKERS), default=2, help="DataLoader workers (default 2)")
    p.add_argument("--device", type=device_option, default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    add_speed_options(p, "the network and classifier")
    return p


def classifier(payload: dict, backbone: nn.Module, where: str, features: int, classes: int) -> nn.Module:
    """backbone + the stored linear classifier, as training scored it.

    The entry is checked against what it must be (Linear(features -> the test split's classes),
    finite), so a damaged or foreign checkpoint gets one line instead of torch's shape errors.
    """
    state = payload.get(CLASSIFIER)
    if not isinstance(state, dict) or "weight" not in state:
        raise UserError(f"{where} has no classifier head; evaluate a last.pt / best.pt written by "
                        "python -m facenar.train --task cifar10 or imagenet")
    shapes = {key: tuple(value.shape) if isinstance(value, torch.Tensor) and value.is_floating_point()
              else type(value).__name__ for key, value in state.items()}
    if shapes != {"weight": (classes, features), "bias": (classes,)}:
        raise UserError(f"{where}: its classifier entry is {shapes}"[:300] + f", expected weight {(classes, features)} "
                        f"and bias {(classes,)} (the test split's {classes} classes, the network's {features} "
                        "features); the checkpoint is damaged or belongs to other data")
    if not all(torch.isfinite(value).all() for value in state.values()):
        raise UserError(f"{where}: its classifier weights are not finite (NaN/inf); the training run diverged")
    fc = nn.Linear(features, classes)
    fc.load_state_dict(state)
    return nn.Sequential(backbone, fc.to(next(backbone.parameters()).device)).eval()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    backbone, arch, payload = load_model(args.model)
    config = payload.get("config") if isinstance(payload.get("config"), dict) else {}
    task_name = config.get("task", DEFAULT_TASK)
    task = get_task(task_name)
    if task.scored_by != "python -m facenar.evaluate":
        raise UserError(f"{args.model} is a {task.title} checkpoint; score it with {task.scored_by}")
    if not isinstance(task, ClassificationTask):
        raise UserError(f"{args.model} was trained for --task {task_name}, which has no test-split accuracy")
    data = args.data or config.get("data")
    if not data:
        raise UserError(f"{args.model} does not record its data; pass --data DIR")
    # the data the checkpoint records is read too: the guard needs the defaulted --data as well
    check_outputs(args.force, files={"--json": args.json}, inputs={"--model": args.model, "--data": data})
    device = resolve_device(args.device)
    evaluation = TopK(task, data, args.workers)
    model = Fast(classifier(payload, backbone.to(device), args.model, arch.embedding_size, evaluation.classes),
                 args.compile, args.channels_last, device, label="network and classifier")
    results, _, _ = evaluation.run(model, str(device), arch.input_size, args.batch_size)
    print(evaluation.describe(results))
    if args.json:
        report = {"model": str(args.model), "task": task_name, "data": str(data), **results}
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
