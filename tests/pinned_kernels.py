"""Run a recorded CPU computation on kernels that give the same bits on every x86-64 machine.

A recorded float result holds only for the kernels that produced it: torch dispatches its vector
kernels by instruction set (AVX2 vs AVX-512), oneDNN picks convolution code and blocking by ISA and
cache size, MKL picks GEMM code by CPU, NNPACK by ISA, and a search amplifies the last bit into other
architectures. Environment variables that choose kernels are read when torch loads, so a recorded run
runs in a subprocess with every choice fixed:
  ATEN_CPU_CAPABILITY=default  torch's own kernels without explicit SIMD (baseline x86-64 code)
  MKL_CBWR=COMPATIBLE          MKL's conditional numerical reproducibility: one code path on every
                               Intel and AMD x86 CPU
  oneDNN and NNPACK off        convolutions go through im2col + MKL GEMM (pin_in_process)
  one torch thread             reductions are split by thread count
x86-64 without MKL in torch, or any other architecture (arm64 has no MKL), cannot reproduce the
recording: the caller skips there with `unavailable_reason()`.
"""
from __future__ import annotations

import os
import platform

PINNED_ENV = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "OMP_NUM_THREADS": "1",
              "MKL_NUM_THREADS": "1"}


def pinned_env() -> dict[str, str]:
    """This process's environment with the kernel choices fixed (for the subprocess that records)."""
    return {**os.environ, **PINNED_ENV}


def unavailable_reason() -> str | None:
    """Why pinned kernels cannot reproduce an x86-64 recording here, or None where they can."""
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        return f"recorded runs are pinned to x86-64 MKL kernels; this machine is {machine}"
    import torch

    if not torch.backends.mkl.is_available():
        return "recorded runs are pinned to MKL kernels; this torch build has no MKL"
    return None


def pin_in_process() -> None:
    """The choices that only code can make: no oneDNN or NNPACK convolutions, one thread."""
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    torch.set_num_threads(1)
