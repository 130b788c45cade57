"""Where facenar keeps generated data: FACENAR_HOME (default ~/.cache/facenar)."""
from __future__ import annotations

import os
from pathlib import Path


def facenar_home() -> Path:
    return Path(os.environ.get("FACENAR_HOME", Path.home() / ".cache" / "facenar"))


def demo_data_dir() -> Path:
    """The built-in synthetic demo dataset (emore layout + lfw/cfp_fp/agedb_30 .bin files)."""
    return facenar_home() / "demo"


def demo_proxy_dir() -> Path:
    """The proxy split built from the demo dataset (what `facenar.search` uses by default)."""
    return facenar_home() / "demo_proxy"
