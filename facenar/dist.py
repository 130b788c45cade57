"""torchrun / DDP plumbing shared by search and train: NCCL on CUDA, gloo on CPU.

A job is entered through `distributed_job`: whatever rank raises, that rank publishes the failure in
the process group's store and leaves without waiting in a collective; a watcher thread on every other
rank sees it within a fraction of a second and ends that process with the same exit code, silently.
So an error anywhere ends the whole job with one line (printed by the first rank that failed), never
a hang until the collective timeout.
"""
from __future__ import annotations

import argparse
import os
import re
import contextlib
import socket
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as torch_dist

from facenar_runtime.errors import UserError

# Collectives wait this long for a rank that works alone (rank 0's controller steps, plots, checkpoint
# writes) before aborting the job; NCCL's own default is 10 minutes. FACENAR_DIST_TIMEOUT_MIN overrides it.
DEFAULT_TIMEOUT_MIN = 30
_FAILED, _CODE, _COUNT, _WHO = "facenar/failed", "facenar/exit_code", "facenar/failures", "facenar/failed_process"
WATCH_INTERVAL_S = 0.2
# A peer leaves once the failing process has (so torchrun's report names that rank as the root cause),
# waiting at most this long; 1 s when the failing rank runs on another machine.
PEER_GRACE_S = 10.0


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def device_problem(requested: str) -> str | None:
    """Why `requested` cannot be used here (None when it can): auto, cpu, or a CUDA device this machine has.

    Anything else (`foo`, `meta`, `mps`) would run on something facenar does not support or, for
    `meta`, on no data at all and report meaningless numbers with exit 0.
    """
    if requested in ("auto", "cpu"):
        return None
    match = re.fullmatch(r"cuda(?::(\d{1,4}))?", requested)
    if match is None:
        return f"unknown device {requested!r}; use auto, cpu, cuda or cuda:N"
    if not torch.cuda.is_available():
        return "no CUDA device is available here; use --device cpu"
    count = torch.cuda.device_count()
    if match.group(1) is not None and int(match.group(1)) >= count:
        return f"this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}"
    return None


def resolve_device(requested: str) -> str:
    """`auto` -> cuda when available, else cpu; the one check of a device every command makes."""
    problem = device_problem(requested)
    if problem is not None:
        raise UserError(f"--device {requested}: {problem}")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def device_option(text: str) -> str:
    """The argparse `type=` of every command's --device: a device this machine cannot use is a usage
    error before any work; the text is kept (a run stores `auto` and resolves it where it runs)."""
    problem = device_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def pick_device(requested: str = "auto", local_rank: int = 0) -> torch.device:
    """cuda -> this process's GPU: LOCAL_RANK among the visible ones (modulo: a launcher that gives
    each process one GPU through CUDA_VISIBLE_DEVICES leaves every process device 0)."""
    requested = resolve_device(requested)
    if requested == "cuda":
        return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return torch.device(requested)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """--amp auto|bf16|fp16|off -> the CUDA autocast dtype (None: full precision; always on a CPU).

    auto = bf16 only where it is native (compute capability 8.0+, Ampere on); torch reports bf16 as
    supported on older GPUs through slow emulation, so there auto means fp16 with a GradScaler.
    """
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
    return torch.float16 if amp == "fp16" else torch.bfloat16


def collective_timeout() -> timedelta:
    text = os.environ.get("FACENAR_DIST_TIMEOUT_MIN", str(DEFAULT_TIMEOUT_MIN))
    try:
        minutes = float(text)
    except ValueError:
        minutes = -1.0
    if not minutes > 0:
        raise UserError(f"FACENAR_DIST_TIMEOUT_MIN={text!r}: give the collective timeout in minutes (> 0)")
    return timedelta(minutes=minutes)


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group that torchrun describes in the environment; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        torch.backends.cudnn.benchmark = True  # fixed input shapes: pick the fastest kernels once
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if world_size > 1 and not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", timeout=collective_timeout(),
                                      device_id=dev if dev.type == "cuda" else None)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


class _FailureWatch:
    """Publishes this rank's failure in the store, and ends this process when another rank failed."""

    def __init__(self):
        self.store = torch_dist.distributed_c10d._get_default_store().clone()  # its own connection
        self.failed_here, self.stopped = False, threading.Event()
        self.thread = threading.Thread(target=self._watch, name="facenar-failure-watch", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopped.wait(WATCH_INTERVAL_S):
            try:
                failed = self.store.check([_FAILED])
                code = int(self.store.get(_CODE)) if failed else 0
            except Exception:  # the store went away with the rank that hosted it: that rank has ended
                failed, code = True, 1
            if failed and not self.failed_here and not self.stopped.is_set():
                self.wait_for_reporter()
                os._exit(code or 1)  # blocked in a collective or not: leave, silently; the failing rank reports

    def publish(self, code: int) -> int | None:
        """Record a failure: None for the first rank to fail (it alone reports the error), else the exit
        code that rank gave (a peer's own error is mostly the echo of it: a collective cut short)."""
        self.failed_here = True
        try:
            if self.store.add(_COUNT, 1) == 1:
                self.store.set(_CODE, str(code))
                self.store.set(_WHO, f"{socket.gethostname()}:{os.getpid()}")
                self.store.set(_FAILED, "1")
                return None
            return int(self.store.get(_CODE))
        except Exception:
            return None

    def wait_for_reporter(self) -> None:
        """Until the first failing process has ended (PEER_GRACE_S at most)."""
        try:
            host, pid = self.store.get(_WHO).decode().rsplit(":", 1)
        except Exception:
            return
        if host != socket.gethostname():
            time.sleep(1.0)
            return
        deadline = time.monotonic() + PEER_GRACE_S
        while time.monotonic() < deadline:
            try:
                os.kill(int(pid), 0)
            except OSError:  # gone (or not ours to probe)
                return
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopped.set()


def exit_code(exc: BaseException) -> int:
    """The code the error boundary (facenar_runtime.cli.run_cli) gives this exception."""
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return getattr(exc, "exit_code", 2 if isinstance(exc, OSError) else 1)


@contextlib.contextmanager
def distributed_job(device: str = "auto"):
    """Join the group (if any) for the block; on an error anywhere, every rank leaves within seconds.

    The first rank to fail re-raises (the error boundary prints its one line); a rank that fails later
    (mostly a collective cut short by the first one leaving) exits silently with the first one's code;
    a rank blocked elsewhere is ended by its watcher, with the same code.
    """
    ctx = init_distributed(device)
    watch = _FailureWatch() if ctx.distributed else None
    try:
        yield ctx
    except BaseException as exc:
        if watch is None:
            raise
        code = exit_code(exc) if not isinstance(exc, SystemExit) else (exc.code or 0)
        first_code = watch.publish(code)
        watch.stop()
        torch_dist.destroy_process_group()  # no barrier: the peers are leaving too (and leave their collectives)
        if first_code is None:
            raise
        watch.wait_for_reporter()
        raise SystemExit(first_code) from None
    else:
        if watch is not None:
            barrier(ctx)  # a rank leaving while others still talk to it aborts gloo
            watch.stop()  # every rank got here: from now on, a peer's exit is no failure
            torch_dist.destroy_process_group()


def broadcast_object(obj, ctx: DistContext, src: int = 0):
    """Rank `src`'s object on every rank (e.g. the architecture sampled for this minibatch)."""
    if not ctx.distributed:
        return obj
    holder = [obj]
    torch_dist.broadcast_object_list(holder, src=src)
    return holder[0]


def shard_and_gather(items: list, score_one, ctx: DistContext, progress=None) -> list:
    """[score_one(item) for item in items], each item scored on exactly one rank.

    `items` must be the same list on every rank (broadcast it first); rank r scores items r, r+W,
    r+2W, ... (strided, so a list sorted by cost still splits evenly) and every rank gets all the
    results in item order. `progress` wraps this rank's own share (e.g. a progress bar on rank 0).
    """
    mine = items[ctx.rank::ctx.world_size] if ctx.distributed else list(items)
    scores = [score_one(item) for item in (progress(mine) if progress else mine)]
    if not ctx.distributed:
        return scores
    parts = [None] * ctx.world_size
    torch_dist.all_gather_object(parts, scores)
    merged = [None] * len(items)
    for rank, part in enumerate(parts):
        merged[rank::ctx.world_size] = part
    return merged


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        tensor /= ctx.world_size
    return tensor


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        torch_dist.barrier()  # on its device: init_process_group was given device_id
