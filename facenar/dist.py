"""torchrun / DDP plumbing shared by search and train: NCCL on CUDA, gloo on CPU."""
from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist

from facenar_runtime.errors import UserError


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
    requested = resolve_device(requested)
    if requested == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(requested)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """--amp auto|bf16|fp16|off -> the CUDA autocast dtype (None: full precision; always on a CPU)."""
    if device.type != "cuda" or amp == "off":
        return None
    return torch.float16 if amp == "fp16" else torch.bfloat16


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group that torchrun describes in the environment; a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world_size > 1 and not torch_dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        torch_dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def broadcast_object(obj, ctx: DistContext, src: int = 0):
    """Rank `src`'s object on every rank (e.g. the architecture sampled for this minibatch)."""
    if not ctx.distributed:
        return obj
    holder = [obj]
    torch_dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_reduce_mean(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    if ctx.distributed:
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.SUM)
        tensor /= ctx.world_size
    return tensor


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        torch_dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and torch_dist.is_initialized():
        torch_dist.barrier()  # a rank leaving while others still talk to it aborts gloo
        torch_dist.destroy_process_group()
