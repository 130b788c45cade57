"""The task registry: every registered task keeps the Task contract; cifar100 runs search, train, evaluate."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from data_tools.cifar import CIFAR100, load_cifar
from data_tools.cifar_demo import make_demo_cifar
from facenar.search.config import PRESETS as SEARCH_PRESETS, SearchConfig
from facenar.tasks.base import TASKS, Task, check_task_options, get_task
from facenar.train.config import PRESETS as TRAIN_PRESETS, TrainConfig
from facenar_runtime.errors import UserError

NET = ["--backbone", "resnet18", "--width", "0.125", "--embedding-size", "64", "--input-size", "32", "--device", "cpu"]


@pytest.mark.parametrize("name", TASKS.names())
def test_every_task_keeps_the_contract(name):
    task = get_task(name)
    assert isinstance(task, Task) and task.name == name and TASKS.summaries()[name]
    for method in ("search_data", "search_head", "search_loss", "train_data", "train_head", "evaluation",
                   "default_data"):
        assert getattr(type(task), method) is not getattr(Task, method), f"{name} lacks {method}"
    assert set(task.search_options) <= SearchConfig.names() and set(task.train_options) <= TrainConfig.names()
    assert task.search_data_help and task.train_data_help and task.title
    for pipeline, presets, config in (("search", SEARCH_PRESETS, SearchConfig), ("train", TRAIN_PRESETS, TrainConfig)):
        table = getattr(task, f"{pipeline}_presets")
        assert {"paper", "demo"} <= set(table)
        for preset in table:
            key = preset if name == "face" else f"{name}-{preset}"
            values = presets[key]
            assert values.get("task", "face") == name
            config(**values).validate()  # every preset is a valid configuration


def test_an_option_of_another_task_is_refused_naming_its_owner():
    check_task_options("face", {"scale": 16.0}, "search", SearchConfig.flag)
    with pytest.raises(UserError, match=r"--margin-m2 is an option of the face task; --task cifar100 does not"):
        check_task_options("cifar100", {"m2": 0.1}, "search", SearchConfig.flag)
    with pytest.raises(UserError, match="unknown task 'mnist'"):
        get_task("mnist")


@pytest.fixture(scope="module")
def tiny_cifar100(tmp_path_factory) -> Path:
    """The CIFAR-100 demo generator at 3 train / 1 test images per class: 300 + 100 images, official format."""
    return make_demo_cifar(tmp_path_factory.mktemp("c100") / "cifar-100-python", 3, 1, layout=CIFAR100)


def test_cifar100_demo_is_the_official_layout(tiny_cifar100):
    import pickle

    assert sorted(p.name for p in tiny_cifar100.iterdir() if not p.name.startswith(".")) == [
        "README.txt", "demo.json", "meta", "test", "train"]
    batch = pickle.loads((tiny_cifar100 / "train").read_bytes(), encoding="bytes")
    assert set(batch) == {b"filenames", b"batch_label", b"fine_labels", b"coarse_labels", b"data"}
    train = load_cifar(tiny_cifar100, "train", CIFAR100)
    assert train.images.shape == (300, 32, 32, 3) and len(train.classes) == 100
    assert np.bincount(train.labels).tolist() == [3] * 100
    test = load_cifar(tiny_cifar100.parent, "test", CIFAR100)  # the folder holding cifar-100-python/
    assert len(test.labels) == 100


def test_a_cifar10_folder_is_not_cifar100(tmp_path):
    folder = make_demo_cifar(tmp_path / "cifar-10-batches-py", 1, 1)
    with pytest.raises(UserError, match="cifar-100-python"):
        load_cifar(folder, "train", CIFAR100)


def test_cifar100_searches_trains_and_evaluates(tiny_cifar100, tmp_path, capsys):
    from facenar.evaluate import main as evaluate
    from facenar.search.cli import main as search
    from facenar.train.cli import main as train

    found = tmp_path / "search"
    assert search(["--task", "cifar100", "--data", str(tiny_cifar100), "--out", str(found), *NET, "--epochs", "2",
                   "--pretrain-epochs", "1", "--t0", "2", "--batch-size", "16", "--steps-per-epoch", "2",
                   "--controller-steps", "1", "--controller-samples", "2", "--val-batch", "16",
                   "--derive-samples", "1", "--random-samples", "1"]) == 0
    config = json.loads((found / "config.json").read_text())
    assert (config["task"], config["preset"]) == ("cifar100", "cifar100-paper")
    assert "270 search-train images, 30 held-out val images, 100 classes" in (found / "run.log").read_text()
    run = tmp_path / "train"
    assert train(["--task", "cifar100", "--data", str(tiny_cifar100), "--arch", str(found / "arch.json"),
                  "--out", str(run), *NET, "--epochs", "1", "--batch-size", "50", "--t0", "1", "--workers", "0",
                  "--log-every", "2"]) == 0
    assert "(100 images): top-1" in capsys.readouterr().out
    report = tmp_path / "eval.json"
    assert evaluate(["--model", str(run / "last.pt"), "--json", str(report), "--workers", "0"]) == 0
    result = json.loads(report.read_text())
    assert (result["task"], result["images"]) == ("cifar100", 100) and 0 <= result["top1"] <= result["top5"] <= 100
