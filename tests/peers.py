"""Reference peers (mxnet, insightface) live in their own venvs; tests talk to them by subprocess.

The venvs are cached under FACENAR_PEER_HOME (default ~/.cache/facenar/peers). When one cannot be
created the test is skipped with the reason, except under FACENAR_REQUIRE_PEERS=1 (set by
.ci/run), where it fails: CI must exercise the interop.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PEER_PACKAGES = {
    "mxnet": ["mxnet==1.9.1", "numpy==1.23.5", "opencv-python-headless==4.11.0.86"],
    "insightface": ["insightface==2.1"],
}
PEER_IMPORT = {"mxnet": "import mxnet", "insightface": "import insightface, onnxruntime"}


def peer_home() -> Path:
    return Path(os.environ.get("FACENAR_PEER_HOME", Path.home() / ".cache" / "facenar" / "peers"))


def _unavailable(reason: str):
    if os.environ.get("FACENAR_REQUIRE_PEERS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def peer_python(name: str) -> Path:
    """Path to the python of peer venv `name`, creating the venv on first use."""
    venv = peer_home() / name
    python = venv / "bin" / "python"
    marker = venv / ".facenar-ready"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES[name]],
                                 capture_output=True, text=True)
        if install.returncode != 0:
            _unavailable(f"cannot create the {name} peer venv: {install.stderr.strip()[-500:]}")
        marker.touch()
    check = subprocess.run([str(python), "-c", PEER_IMPORT[name]], capture_output=True, text=True)
    if check.returncode != 0:
        _unavailable(f"the {name} peer venv at {venv} does not import: {check.stderr.strip()[-500:]}")
    return python


def run_peer(name: str, script: str, *args: str, timeout: float = 300) -> str:
    """Run `script` (Python source) in peer venv `name`; return stdout, fail the test on error."""
    python = peer_python(name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MXNET_SUBGRAPH_VERBOSE"] = "0"
    done = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd="/")
    if done.returncode != 0:
        pytest.fail(f"{name} peer script failed:\n{done.stderr[-3000:]}")
    return done.stdout
