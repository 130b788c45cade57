"""The pinned-kernel environment of the recorded runs takes effect, and is refused where it cannot."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pinned_kernels


def test_pinned_environment_selects_the_portable_kernels():
    if pinned_kernels.unavailable_reason():
        pytest.skip(pinned_kernels.unavailable_reason())
    probe = ("import torch, pinned_kernels; pinned_kernels.pin_in_process(); "
             "print(torch.backends.cpu.get_cpu_capability(), torch.backends.mkldnn.enabled, "
             "torch._C._get_nnpack_enabled(), torch.get_num_threads())")
    done = subprocess.run([sys.executable, "-c", probe], env=pinned_kernels.pinned_env(), cwd=Path(pinned_kernels.__file__).parent,
                          capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["DEFAULT", "False", "False", "1"]


@pytest.mark.parametrize("machine", ["aarch64", "arm64", "ppc64le"])
def test_other_architectures_skip_with_the_reason(monkeypatch, machine):
    monkeypatch.setattr(pinned_kernels.platform, "machine", lambda: machine)
    assert machine in pinned_kernels.unavailable_reason()


def test_a_torch_without_mkl_skips_with_the_reason(monkeypatch):
    import torch

    monkeypatch.setattr(pinned_kernels.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.backends.mkl, "is_available", lambda: False)
    assert "no MKL" in pinned_kernels.unavailable_reason()
