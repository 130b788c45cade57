"""Shared fixtures: real public files in ../shared/realdata, a tiny synthetic emore dataset."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("FACENAR_PROGRESS", "0")

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("FACENAR_REALDATA", REPO.parent / "shared" / "realdata"))


@pytest.fixture(scope="session")
def realdata() -> Path:
    """../shared/realdata (see its MANIFEST.md); tests that need it skip cleanly when absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real test data not found at {REALDATA}")
    return REALDATA


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """A small demo dataset in the exact emore layout, with lfw/cfp_fp/agedb_30 .bin files."""
    from data_tools.demo import make_demo

    out = tmp_path_factory.mktemp("demo") / "data"
    make_demo(out, num_ids=24, images_per_id=12, pairs_per_bench=20, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_proxy(tiny_demo, tmp_path_factory) -> Path:
    """A proxy split of the tiny demo (24 identities), what the search tests run on."""
    from data_tools.proxy import build_proxy

    out = tmp_path_factory.mktemp("proxy") / "proxy"
    build_proxy(tiny_demo, out, num_ids=24, per_id=12, val_per_id=3, seed=0)
    return out


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Keep tests from reading or filling the user's ~/.cache/facenar."""
    monkeypatch.setenv("FACENAR_HOME", str(tmp_path_factory.getbasetemp() / "facenar_home"))


@pytest.fixture()
def user_folder(tmp_path):
    """A folder the user made (no facenar marker): no --force may ever delete it."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("years of work")
    return folder
