"""make_bin: LFW pairs.txt + image folder -> .bin, read back through load_bin."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from data_tools.binfile import load_bin
from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError
from data_tools.make_bin import main, make_bin, read_pairs

PAIRS = "2\t1\nAnn\t1\t2\nAnn\t1\tBob\t1\nBob\t1\t2\nAnn\t2\tBob\t2\n"


@pytest.fixture()
def lfw_folder(tmp_path):
    images = {}
    for name, count in (("Ann", 2), ("Bob", 2)):
        (tmp_path / "img" / name).mkdir(parents=True)
        for k in range(1, count + 1):
            data = cv2.imencode(".jpg", np.full((112, 112, 3), 40 * k + len(name), np.uint8))[1].tobytes()
            (tmp_path / "img" / name / f"{name}_{k:04d}.jpg").write_bytes(data)
            images[(name, k)] = data
    (tmp_path / "pairs.txt").write_text(PAIRS)
    return tmp_path, images


def test_make_bin_pairs_in_file_order(lfw_folder):
    root, images = lfw_folder
    assert make_bin(root / "img", root / "pairs.txt", root / "x.bin") == 4
    loaded, issame = load_bin(root / "x.bin")
    expected = [("Ann", 1), ("Ann", 2), ("Ann", 1), ("Bob", 1), ("Bob", 1), ("Bob", 2), ("Ann", 2), ("Bob", 2)]
    assert loaded == [images[key] for key in expected]
    assert issame.tolist() == [True, False, True, False]


def test_real_lfw_pairs_file_parses(realdata):
    pairs = read_pairs(realdata / "lfw_pairs" / "pairs.txt")
    assert len(pairs) == 6000
    flags = [same for _, same in pairs]
    assert flags[:300] == [True] * 300 and flags[300:600] == [False] * 300  # fold 1: same then different
    assert pairs[0] == (("Abel_Pacheco", 1, "Abel_Pacheco", 4), True)
    assert pairs[300] == (("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1), False)


def test_cli_refuses_to_overwrite_then_forces(lfw_folder, capsys):
    root, _ = lfw_folder
    args = ["--images", str(root / "img"), "--pairs", str(root / "pairs.txt"), "--out", str(root / "x.bin")]
    main(args)
    with pytest.raises(SystemExit) as info:
        run_cli(main, args)
    assert info.value.code == 2 and "--force" in capsys.readouterr().err
    main(args + ["--force"])


def test_missing_image_is_named(lfw_folder, capsys):
    root, _ = lfw_folder
    shutil.rmtree(root / "img" / "Bob")
    args = ["--images", str(root / "img"), "--pairs", str(root / "pairs.txt"), "--out", str(root / "x.bin")]
    with pytest.raises(SystemExit) as info:
        run_cli(main, args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.count("\n") == 1 and "Bob_0001.jpg" in err
    assert not (root / "x.bin").exists()


def test_bad_pairs_line(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "pairs.txt").write_text("Ann\t1\t2\nAnn one two\n")
    with pytest.raises(UserError, match=r"pairs.txt:2: expected"):
        make_bin(tmp_path / "img", tmp_path / "pairs.txt", tmp_path / "x.bin")


def test_unaligned_images_warn(lfw_folder, capsys):
    root, _ = lfw_folder
    big = cv2.imencode(".jpg", np.zeros((250, 250, 3), np.uint8))[1].tobytes()
    (root / "img" / "Ann" / "Ann_0001.jpg").write_bytes(big)
    make_bin(root / "img", root / "pairs.txt", root / "x.bin")
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "250x250" in err
