"""The classification tasks through search, train and evaluate on tiny CIFAR / ImageFolder data."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facenar.checkpoint import load_checkpoint
from facenar.evaluate import main as evaluate
from facenar.search.cli import main as search
from facenar.train.cli import main as train

REPO = Path(__file__).resolve().parents[1]
BACKBONE = "resnet18"
# width 0.125: 64 features, which is also ResNet-18's 512 x width
NET = ["--backbone", BACKBONE, "--width", "0.125", "--embedding-size", "64", "--input-size", "32"]
SEARCH = [*NET, "--epochs", "2", "--pretrain-epochs", "1", "--t0", "2", "--batch-size", "16",
          "--steps-per-epoch", "3", "--controller-steps", "2", "--controller-samples", "3", "--val-batch", "16",
          "--derive-samples", "2", "--random-samples", "2", "--device", "cpu"]
TRAIN = [*NET, "--epochs", "2", "--batch-size", "30", "--lr", "0.05", "--t0", "2", "--workers", "0",
         "--device", "cpu", "--log-every", "2", "--verify-batch", "64"]


@pytest.fixture(scope="session")
def tiny_cifar(tmp_path_factory) -> Path:
    """The demo CIFAR generator at 30 train / 6 test images per class: 300 + 60 images, official format."""
    from data_tools.cifar_demo import make_demo_cifar

    return make_demo_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", 30, 6)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    """An ImageFolder tree of JPEGs (48-200 px, mixed extensions): 10 classes x 4 train + 2 val."""
    from data_tools.imagefolder import make_demo_imagefolder

    return make_demo_imagefolder(tmp_path_factory.mktemp("folder") / "tree", 4, 2)


@pytest.fixture(scope="module")
def searched(tiny_cifar, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("search") / "run"
    assert search(["--task", "cifar10", "--data", str(tiny_cifar), "--out", str(run), *SEARCH]) == 0
    return run


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _arch(run: Path) -> dict:
    data = json.loads((run / "arch.json").read_text())
    data["provenance"]["search"].pop("run_dir")
    return data


def test_search_cifar10_writes_arch_and_record_and_resumes_exactly(searched, tiny_cifar, tmp_path):
    config = json.loads((searched / "config.json").read_text())
    assert (config["task"], config["preset"], config["input_size"]) == ("cifar10", "cifar10-paper", 32)
    arch = _arch(searched)
    assert arch["backbone"] == BACKBONE and len(arch["codes"]) == 8
    rows = _rows(searched / "search.csv")
    assert [r["phase"] for r in rows] == ["pretrain", "search"]
    assert all(0.0 <= float(r["reward_max"]) <= 1.0 for r in rows)
    cut = tmp_path / "cut"
    search(["--task", "cifar10", "--data", str(tiny_cifar), "--out", str(cut), *SEARCH, "--stop-after-epochs", "1"])
    assert not (cut / "arch.json").exists()
    assert search(["--resume", str(cut)]) == 0
    assert _arch(cut) == arch
    for name in ("search.csv", "search_ops.csv"):
        assert (cut / name).read_text() == (searched / name).read_text()


def test_search_holds_out_a_seeded_tenth_and_never_reads_the_test_batch(tiny_cifar, monkeypatch):
    from data_tools import cifar
    from facenar.search.config import resolve_config
    from facenar.tasks import get_task

    read = []
    real = cifar.load_cifar
    monkeypatch.setattr(cifar, "load_cifar", lambda source, split="train", layout=cifar.CIFAR10:
                        read.append(split) or real(source, split, layout))
    monkeypatch.setattr("facenar.tasks.classification_data.load_cifar", cifar.load_cifar)
    cfg = resolve_config({"task": "cifar10", "data": str(tiny_cifar), "backbone": BACKBONE, "embedding_size": 64}, None)
    data = get_task("cifar10").search_data(cfg)
    images, labels = data.val_set(torch.device("cpu"))
    assert images.dtype == torch.uint8 and images.shape == (30, 3, 32, 32) and len(data.train) == 270
    assert set(read) == {"train"}
    x = data.to_input(images[:4])
    assert torch.allclose(x, torch.stack([data.val[i][0] for i in range(4)]), atol=1e-5)  # same normalisation


def test_search_imagenet_folder_holds_out_a_tenth_of_train(tiny_folder, tmp_path):
    run = tmp_path / "run"
    assert search(["--task", "imagenet", "--data", str(tiny_folder), "--out", str(run), *SEARCH,
                   "--batch-size", "8", "--val-batch", "4"]) == 0
    assert "36 search-train images, 4 held-out val images, 10 classes" in (run / "run.log").read_text()
    assert (run / "arch.json").is_file() and len(_rows(run / "search.csv")) == 2


def test_task_presets_are_data_and_demo_is_the_default_without_data():
    from facenar.tasks.base import TASKS
    from facenar.train.config import resolve_config

    for pipeline in ("search", "train"):
        tables = [getattr(TASKS.get(name), f"{pipeline}_presets") for name in TASKS if name != "face"]
        assert {p["backbone"] for table in tables for p in table.values()} == {"resnet18"}
    demo = resolve_config({"task": "cifar10", "backbone": BACKBONE})
    assert (demo.task, demo.epochs, demo.width, demo.input_size, demo.grad_clip) == ("cifar10", 3, 0.25, 32, 0.0)
    paper = resolve_config({"task": "imagenet", "data": "x", "backbone": BACKBONE})
    assert (paper.epochs, paper.batch_size, paper.input_size, paper.weight_decay, paper.t0) == (90, 256, 224, 1e-4, 90)
    assert resolve_config({"data": "x"}).backbone == "iresnet50"  # the face task keeps its defaults


def test_train_cifar10_reports_test_top1_resumes_and_evaluates(searched, tiny_cifar, tmp_path, capsys):
    full, cut = tmp_path / "full", tmp_path / "cut"
    common = ["--task", "cifar10", "--data", str(tiny_cifar), "--arch", str(searched / "arch.json"), *TRAIN]
    assert train([*common, "--out", str(full)]) == 0
    summary = capsys.readouterr().out
    assert "top-1" in summary and "top-5" in summary and "(60 images)" in summary
    rows = [r for r in _rows(full / "train.csv") if r["top1"]]
    assert len(rows) == 2 and all(0 <= float(r["top1"]) <= 100 for r in rows)
    assert train([*common, "--out", str(cut), "--max-steps", "13"]) == 0  # stops mid-epoch 2 (10 steps each)
    assert train(["--resume", str(cut)]) == 0
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["step"] == b["step"] == 20
    assert torch.equal(a["classifier"]["weight"], b["classifier"]["weight"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    out = tmp_path / "eval.json"
    capsys.readouterr()
    assert evaluate(["--model", str(full / "last.pt"), "--json", str(out), "--workers", "0"]) == 0
    report = json.loads(out.read_text())
    assert report["top1"] == float(rows[-1]["top1"]) and report["top5"] == float(rows[-1]["top5"])
    assert (report["task"], report["images"]) == ("cifar10", 60)
    assert f"top-1 {report['top1']:.2f}%" in capsys.readouterr().out


def test_train_imagenet_folder_one_epoch(tiny_folder, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(["--task", "imagenet", "--data", str(tiny_folder), "--out", str(run), *TRAIN, "--epochs", "1",
                  "--batch-size", "8"]) == 0
    assert "(20 images): top-1" in capsys.readouterr().out
    payload = load_checkpoint(run / "best.pt")
    assert payload["config"]["task"] == "imagenet" and payload["classifier"]["weight"].shape == (10, 64)


def test_evaluate_refuses_face_checkpoints(tiny_demo, tmp_path):
    from facenar_runtime.errors import UserError

    run = tmp_path / "face"
    assert train(["--data", str(tiny_demo), "--out", str(run), "--backbone", "iresnet18", "--width", "0.0625",
                  "--input-size", "32", "--embedding-size", "32", "--batch-size", "48", "--epochs", "1",
                  "--max-steps", "1", "--workers", "0", "--device", "cpu"]) == 0
    with pytest.raises(UserError, match="facenar.verify"):
        evaluate(["--model", str(run / "last.pt")])


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
               "-m", "facenar.train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


@pytest.mark.slow
def test_torchrun_two_gloo_processes_imagenet_then_resume_on_one(tiny_folder, tmp_path):
    run = tmp_path / "run"
    # 40 images, 4 per process: 5 global steps of 8 per epoch; stop after epoch 1, finish on one process
    done = _torchrun("--task", "imagenet", "--data", str(tiny_folder), "--out", str(run), *TRAIN,
                     "--batch-size", "4", "--max-steps", "5")
    assert done.returncode == 0, done.stderr[-3000:]
    first = load_checkpoint(run / "last.pt")
    assert (first["step"], first["epoch"], first["world_size"]) == (5, 1, 2)
    assert [r["top1"] != "" for r in _rows(run / "train.csv")].count(True) == 1
    assert train(["--resume", str(run)]) == 0  # 4 per process: epoch 2 takes 10 steps on one process
    final = load_checkpoint(run / "last.pt")
    assert (final["step"], final["epoch"], final["world_size"]) == (15, 2, 1)
    assert not torch.equal(final["classifier"]["weight"], first["classifier"]["weight"])
