"""facenar.train on the tiny emore-layout demo data: training, verification, checkpoints, resume, errors."""
from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from facenar_runtime.errors import UserError
from facenar.checkpoint import load_checkpoint
from facenar.train.cli import main
from facenar.data import EpochSampler, SeededSamples, make_loader
from facenar.train.config import resolve_config
from facenar.train.engine import TrainStep

REPO = Path(__file__).resolve().parents[1]
# 288 images / 48 per step = 6 steps per epoch on the tiny_demo fixture
TINY = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "32",
        "--batch-size", "48", "--epochs", "2", "--workers", "0", "--device", "cpu", "--log-every", "2",
        "--checkpoint-every", "4", "--lr", "0.05"]


def _train(data: Path, out: Path, *extra: str) -> None:
    assert main(["--data", str(data), "--out", str(out), *TINY, *extra]) == 0


def _rows(run: Path) -> list[dict]:
    with open(run / "train.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_config_layers_defaults_preset_and_options():
    cfg = resolve_config({"epochs": 4}, preset="demo")
    assert (cfg.backbone, cfg.epochs, cfg.lr, cfg.t0, cfg.momentum) == ("iresnet18", 4, 0.1, 2, 0.9)
    assert resolve_config({"arch_file": "a.json"}, preset="demo").width is None  # the file's own width
    assert resolve_config({"arch_file": "a.json", "width": 0.5}, preset="demo").width == 0.5
    assert resolve_config({}).margins == (1.0, 0.5, 0.0)
    assert resolve_config({"margin": "cosface", "m3": 0.35}).margins == (1.0, 0.0, 0.35)
    assert resolve_config({}, stored={"epochs": 7, "arch": {}, "num_classes": 3}).epochs == 7
    for bad in ({"margin": "softmax"}, {"sample_rate": 0.0}, {"batch_size": 0}, {"schedule": "step"}):
        with pytest.raises(UserError):
            resolve_config(bad)


@pytest.mark.parametrize("world,resumed_world", [(1, 1), (2, 2), (2, 3)])
def test_sampler_resumes_mid_epoch_on_any_world_size(world, resumed_world):
    size, per_rank, done = 50, 4, 2  # two global batches consumed before the stop

    def global_batches(world_size: int, start: int) -> list[set[int]]:
        ranks = []
        for rank in range(world_size):
            sampler = EpochSampler(size, rank, world_size, seed=5)
            sampler.set_epoch(3, start=start)
            ranks.append(list(sampler))
        steps = min(len(r) for r in ranks) // per_rank
        return [{i for r in ranks for i in r[k * per_rank:(k + 1) * per_rank]} for k in range(steps)]

    full = global_batches(world, 0)
    consumed = set().union(*full[:done])
    tail = global_batches(resumed_world, done * per_rank * world)
    if resumed_world == world:
        assert tail == full[done:]
    remaining = set().union(*tail)
    assert not remaining & consumed and len(remaining) == len(tail) * per_rank * resumed_world
    assert len(full) == size // (per_rank * world) and len(tail) == (size - len(consumed)) // (per_rank * resumed_world)


class _RandomView(torch.utils.data.Dataset):
    def __len__(self):
        return 10

    def __getitem__(self, index):
        return torch.rand(2), np.random.rand(), index


def test_seeded_samples_repeat_per_epoch_and_leave_global_rng_alone():
    samples = SeededSamples(_RandomView(), seed=1)
    torch.manual_seed(0)
    first = samples[3]
    after = torch.rand(1)
    torch.manual_seed(0)
    assert torch.equal(samples[3][0], first[0]) and samples[3][1] == first[1]
    assert torch.equal(torch.rand(1), after)  # the global stream did not move
    samples.epoch = 1
    assert not torch.equal(samples[3][0], first[0])


def test_persistent_workers_follow_each_epochs_order():
    """Workers kept across epochs hold a copy of the dataset made once: the epoch reaches them in the keys."""
    def epochs(workers: int) -> list[list]:
        sampler = EpochSampler(10, 0, 1, seed=2)
        loader = make_loader(SeededSamples(_RandomView(), seed=1), 5, sampler=sampler, workers=workers,
                             persistent=True)
        seen = []
        for epoch in range(2):
            sampler.set_epoch(epoch)
            seen.append([(x, y.tolist(), i.tolist()) for x, y, i in loader])
        return seen

    plain, persistent = epochs(0), epochs(1)
    assert [[b[2] for b in e] for e in plain] == [[b[2] for b in e] for e in persistent]  # each epoch's order
    assert all(torch.equal(a[0], b[0]) and a[1] == b[1] for e, f in zip(plain, persistent) for a, b in zip(e, f))
    assert plain[0][0][2] != plain[1][0][2]
    first, second = ({i: x[k] for x, _, ids in e for k, i in enumerate(ids)} for e in persistent)
    assert not any(torch.equal(first[i], second[i]) for i in range(10))  # each epoch's own augmentation


def test_training_writes_run_dir_verifies_and_keeps_best(tiny_demo, tmp_path, capsys):
    run = tmp_path / "run"
    _train(tiny_demo, run)
    out = capsys.readouterr().out
    assert "finished at step 12 (epoch 2.00)" in out and "lfw" in out
    rows = _rows(run)
    losses = [float(r["loss"]) for r in rows if r["loss"]]
    assert len(losses) == 6 and all(np.isfinite(losses))
    verified = [r for r in rows if r["mean_acc"]]
    assert [int(r["step"]) for r in verified] == [6, 12]
    assert all(0 <= float(r[f"{b}_acc"]) <= 100 for r in verified for b in ("lfw", "cfp_fp", "agedb_30"))
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "best.pt")
    assert last["step"] == 12 and last["head"].shape == (24, 32) and last["arch"]["input_size"] == 32
    assert best["best_mean_acc"] == max(float(r["mean_acc"]) for r in verified)
    assert set(best["verify"]) == {"lfw", "cfp_fp", "agedb_30"}
    assert (run / "config.json").is_file() and (run / "run.log").is_file()


def test_stopped_and_resumed_run_equals_uninterrupted(tiny_demo, tmp_path):
    _train(tiny_demo, tmp_path / "whole")
    _train(tiny_demo, tmp_path / "parts", "--max-steps", "5")
    assert load_checkpoint(tmp_path / "parts" / "last.pt")["step"] == 5
    assert main(["--resume", str(tmp_path / "parts")]) == 0
    whole, parts = (load_checkpoint(tmp_path / name / "last.pt") for name in ("whole", "parts"))
    assert parts["step"] == whole["step"] == 12
    for name, value in whole["model"].items():
        assert torch.equal(parts["model"][name], value), name
    assert torch.equal(parts["head"], whole["head"]) and torch.equal(parts["head_momentum"], whole["head_momentum"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "images_per_s"} for r in rows]  # noqa: E731
    assert strip(_rows(tmp_path / "parts")) == strip(_rows(tmp_path / "whole"))


def test_bad_inputs_are_one_line_errors(tiny_demo, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _train(tiny_demo, run, "--max-steps", "4", "--bench", "")
    arch = tmp_path / "r50.json"
    arch.write_text('{"backbone": "iresnet50", "ops": ' + str(["conv3x3"] * 24).replace("'", '"') + "}")
    with pytest.raises(UserError, match="iresnet50.*trains an iresnet18"):
        main(["--resume", str(run), "--arch", str(arch)])
    with pytest.raises(UserError, match="epochs"):
        main(["--resume", str(run), "--epochs", "9"])
    with pytest.raises(UserError, match="already exists"):
        _train(tiny_demo, run)

    real_step = TrainStep.step
    calls = []

    def poisoned(self, images, labels, lr):
        calls.append(1)
        return torch.tensor(float("nan")) if len(calls) == 2 else real_step(self, images, labels, lr)

    monkeypatch.setattr(TrainStep, "step", poisoned)
    with pytest.raises(UserError, match=r"nan at step 6; .*keeps step 4"):
        main(["--resume", str(run)])
    assert load_checkpoint(run / "last.pt")["step"] == 4


def test_class_count_must_match_property(tiny_demo, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.rec", "train.idx"):
        (data / name).symlink_to(tiny_demo / name)
    (data / "property").write_text("30,112,112\n")
    with pytest.raises(UserError, match="property"):
        _train(data, tmp_path / "run")


def _torchrun(*args: str, nproc: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with socket.socket() as probe:  # torchrun's static rendezvous needs a concrete free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(port), "-m", "facenar.train", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


@pytest.mark.slow
def test_two_process_run_resumes_on_one_process(tiny_demo, tmp_path):
    run = tmp_path / "run"
    small = [a if a != "48" else "24" for a in TINY]  # 24 per process: the same global batch of 48
    done = _torchrun("--data", str(tiny_demo), "--out", str(run), *small, "--max-steps", "7", nproc=2)
    assert done.returncode == 0, done.stderr[-3000:]
    first = load_checkpoint(run / "last.pt")
    assert (first["step"], first["world_size"], first["head"].shape) == (7, 2, (24, 32))
    assert main(["--resume", str(run)]) == 0  # re-shards the centres onto one process
    final = load_checkpoint(run / "last.pt")
    # 7 steps of 48 images were 1 epoch + 48 images; the other 240 take 10 steps of 24 on one process
    assert (final["step"], final["epoch"], final["world_size"]) == (17, 2, 1)
    assert not torch.equal(final["head"], first["head"])


@pytest.mark.slow
def test_killed_run_resumes_from_its_last_checkpoint(tiny_demo, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "facenar.train", "--data", str(tiny_demo), "--out", str(run), *TINY,
               "--epochs", "4", "--workers", "1"]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    for line in proc.stderr:
        if line.startswith("checkpoint: step 8"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(run / "last.pt")["step"]
    assert 8 <= killed_at < 24
    assert main(["--resume", str(run), "--workers", "1"]) == 0
    assert load_checkpoint(run / "last.pt")["step"] == 24
    steps = [int(r["step"]) for r in _rows(run) if r["loss"]]
    assert steps == list(range(2, 25, 2))  # rows written after the kill were cut back, then redone
