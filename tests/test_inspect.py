"""data_tools.inspect: counts from identity records, parallel decode check of every image."""
from __future__ import annotations

import pytest

from data_tools import inspect as inspect_tool
from facenar_runtime.cli import run_cli
from data_tools.emore import EmoreDataset, write_emore, write_property
from tests.jpeg_data import jpeg, jpeg_identities


@pytest.fixture()
def damaged(tmp_path):
    """3 identities (2, 5, 3 images); one image is garbage and one has the wrong size."""
    identities = jpeg_identities([2, 5, 3], (64, 64))
    identities[1][2] = b"\xff\xd8 not really a jpeg"
    identities[2][0] = jpeg(99, (32, 64))
    write_emore(tmp_path, identities)
    write_property(tmp_path, 3, (64, 64))
    return tmp_path


def run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(inspect_tool.main, argv)
    return info.value.code, capsys.readouterr()


def test_summary_without_decoding(damaged, capsys):
    code, streams = run([str(damaged), "--per-id", "3"], capsys)
    assert code == 0
    assert "identities    3 with images (property: 3 classes, 64x64)" in streams.out
    assert "images        10" in streams.out
    assert "per identity  min 2 / median 3 / max 5" in streams.out
    assert ">= 3 images  2 identities" in streams.out


@pytest.mark.parametrize("workers", [1, 2])
def test_verify_images_reports_bad_keys(damaged, capsys, workers):
    code, streams = run([str(damaged), "--verify-images", "--workers", str(workers)], capsys)
    assert code == 1
    assert "verified      10 images" in streams.out and f"{workers} workers): 1 undecodable, 1 not 64x64" in streams.out
    assert "undecodable keys: 5" in streams.out
    assert "wrong sizes (key:HxW): 8:32x64" in streams.out


def test_verify_images_library_call(damaged):
    ds = EmoreDataset(damaged)
    result = inspect_tool.verify_images(ds, workers=1)
    assert result["checked"] == 10 and result["images_per_s"] > 0


def test_missing_folder_exits_2(tmp_path, capsys):
    code, streams = run([str(tmp_path / "nope")], capsys)
    assert code == 2 and "is not a folder" in streams.err
