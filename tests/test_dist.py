"""Many processes without hangs: errors reach every rank, sharded scoring, resume on fewer GPUs,
AMP choice, and RNG hygiene. The torchrun tests use 2 gloo processes on the CPU."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp

from facenar.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from facenar.data import SeededSamples
from facenar.dist import DistContext, amp_dtype, shard_and_gather

REPO = Path(__file__).resolve().parents[1]
SEARCH = ["--backbone", "iresnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "32",
          "--epochs", "2", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "12", "--steps-per-epoch", "2",
          "--controller-steps", "1", "--controller-samples", "2", "--val-batch", "12", "--derive-samples", "2",
          "--random-samples", "2", "--margin-s", "16", "--margin-m", "0.1", "--device", "cpu"]
TRAIN = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "32",
         "--batch-size", "24", "--epochs", "1", "--workers", "0", "--device", "cpu", "--bench", ""]


def test_amp_auto_is_bf16_only_where_native(monkeypatch):
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # V100: emulated bf16
    assert amp_dtype("auto", gpu) == torch.float16 and amp_dtype("bf16", gpu) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert amp_dtype("auto", gpu) == torch.bfloat16 and amp_dtype("fp16", gpu) == torch.float16
    assert amp_dtype("auto", torch.device("cpu")) is None and amp_dtype("off", gpu) is None


def test_checkpoint_with_more_gpu_rng_states_than_visible_restores(tmp_path, monkeypatch):
    """An 8-GPU run's RNG states (here 3) resumed where one GPU is visible: device 0's state is set."""
    states = [torch.full((16,), i, dtype=torch.uint8) for i in range(3)]
    save_checkpoint(tmp_path / "c.pt", {"rng": {**capture_rng(), "cuda": states}})
    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((device, state)))
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda all_states: pytest.fail("needs every device"))
    restore_rng(load_checkpoint(tmp_path / "c.pt")["rng"])
    assert [device for device, _ in restored] == [0] and torch.equal(restored[0][1], states[0])


def test_seeded_samples_leave_the_gpu_generators_alone(monkeypatch):
    reseeded = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", lambda seed: reseeded.append(seed))
    samples = SeededSamples([(torch.rand(2), 0)] * 3, seed=5)
    first = samples[1][0]
    assert reseeded == []
    assert torch.equal(samples[1][0], first)  # still seeded per sample


def test_shard_and_gather_on_one_process_is_a_plain_map():
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    assert shard_and_gather([3, 1, 2], lambda x: x * 10, ctx) == [30, 10, 20]


def _shard_worker(rank: int, world: int, folder: str) -> None:
    torch_dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=world)
    ctx = DistContext(rank=rank, world_size=world, local_rank=rank, device=torch.device("cpu"))
    scored = []
    items = [(i, i % 3) for i in range(7)]
    results = shard_and_gather(items, lambda item: scored.append(item) or item[0] ** 2, ctx)
    torch.save({"scored": scored, "results": results}, f"{folder}/rank{rank}.pt")
    torch_dist.barrier()
    torch_dist.destroy_process_group()


def test_shard_and_gather_scores_each_item_once_on_two_processes(tmp_path):
    mp.spawn(_shard_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    parts = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    scored = parts[0]["scored"] + parts[1]["scored"]
    assert sorted(scored) == [(i, i % 3) for i in range(7)]  # every item once, on one rank
    assert len(parts[0]["scored"]) == 4 and len(parts[1]["scored"]) == 3
    assert parts[0]["results"] == parts[1]["results"] == [i * i for i in range(7)]  # in item order, everywhere


def _torchrun(*args: str) -> tuple[int, str, float]:
    """(torchrun's exit code, its stderr, seconds from the first `error:` line to the end of the job)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    with socket.socket() as probe:  # torchrun's static rendezvous needs a concrete free port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                             "--master_port", str(port), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    hang = threading.Timer(120, proc.kill)  # a hang fails the test instead of blocking it
    hang.start()
    lines, error_at = [], None
    for line in proc.stderr:
        lines.append(line)
        if error_at is None and line.startswith("error:"):
            error_at = time.perf_counter()
    code = proc.wait()
    hang.cancel()
    return code, "".join(lines), time.perf_counter() - (error_at or 0.0)


def _assert_one_error_line(code: int, stderr: str, seconds: float, message: str, failing_rank: int) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {message}"], stderr[-3000:]
    assert stderr.count("Traceback (most recent call last)") == 1  # torchrun's own; none from a worker
    cause = stderr.split("Root Cause")[1]  # torchrun's report names the rank that failed, with exit 2
    assert f"rank      : {failing_rank} " in cause and "exitcode  : 2 " in cause, cause
    assert code != 0
    assert seconds < 10  # every rank gone within seconds of the error (the collective timeout is 30 min)


@pytest.mark.slow  # about 20-30 s each on 2 loaded cores, most of it starting torch in 3 processes
@pytest.mark.parametrize("rank", [0, 1])
def test_search_error_on_one_rank_ends_the_job(tiny_proxy, tmp_path, rank):
    if rank == 0:  # rank 0 checks the input while rank 1 waits in a broadcast
        args, message = ["-m", "facenar.search", "--data", str(tmp_path / "missing"), "--device", "cpu"], \
            f"--data {tmp_path / 'missing'} does not exist; give a proxy split folder " \
            "(python -m facenar.prepare_proxy builds one)"
    else:  # rank 1 fails in the first epoch while rank 0 waits in the epoch's broadcast
        args, message = ["tests/fail_on_rank.py", "search", "1", *SEARCH, "--data", str(tiny_proxy)], \
            "injected failure on rank 1"
    _assert_one_error_line(*_torchrun(*args, "--out", str(tmp_path / "run")), message, rank)


@pytest.mark.slow
@pytest.mark.parametrize("rank", [0, 1])
def test_train_error_on_one_rank_ends_the_job(tiny_demo, tmp_path, rank):
    """A step that fails on one rank (out of memory on one GPU, say) while the other is in DDP's all-reduce."""
    result = _torchrun("tests/fail_on_rank.py", "train", str(rank), *TRAIN, "--data", str(tiny_demo),
                       "--out", str(tmp_path / "run"))
    _assert_one_error_line(*result, f"injected failure on rank {rank}", rank)
