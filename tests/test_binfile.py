"""Verification .bin files: both image spellings, the real insightface file, and refusing hostile pickles."""
from __future__ import annotations

import pickle

import cv2
import numpy as np
import pytest

from data_tools.binfile import load_bin, save_bin
from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def jpeg(value: int) -> bytes:
    return cv2.imencode(".jpg", np.full((112, 112, 3), value, np.uint8))[1].tobytes()


def test_round_trip_bytes(tmp_path):
    images = [jpeg(v) for v in (10, 20, 30, 40)]
    save_bin(tmp_path / "x.bin", images, [True, False])
    loaded, issame = load_bin(tmp_path / "x.bin")
    assert loaded == images
    assert issame.dtype == bool and issame.tolist() == [True, False]
    assert [p.name for p in tmp_path.iterdir()] == ["x.bin"]  # no temp file left behind


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_ndarray_wrapped_images_and_numpy_flags(tmp_path, protocol):
    images = [jpeg(v) for v in (50, 60)]
    wrapped = [np.frombuffer(b, np.uint8).reshape(-1, 1) for b in images]
    payload = (wrapped, [np.bool_(False)])
    (tmp_path / "x.bin").write_bytes(pickle.dumps(payload, protocol=protocol))
    loaded, issame = load_bin(tmp_path / "x.bin")
    assert loaded == images and issame.tolist() == [False]


def test_python2_era_pickle_of_str_images(tmp_path):
    # what python2 `pickle.dump((bins, issame), f, protocol=2)` writes: SHORT_BINSTRING images
    raw = b"\x80\x02]q\x00(U\x03abcq\x01U\x03xyzq\x02e]q\x03\x88a\x86q\x04."
    (tmp_path / "py2.bin").write_bytes(raw)
    assert load_bin(tmp_path / "py2.bin")[0] == [b"abc", b"xyz"]


def test_real_insightface_small_lfw(realdata):
    images, issame = load_bin(realdata / "insightface_small_lfw" / "small_lfw.bin")
    assert len(images) == 20 and issame.tolist() == [True] * 10
    assert all(isinstance(image, bytes) for image in images)
    assert {decode(image).shape for image in images} == {(112, 112, 3)}


@pytest.mark.parametrize("module, name", [("os", "system"), ("posix", "system"), ("builtins", "eval")])
def test_forbidden_global_is_refused_without_running(tmp_path, module, name):
    marker = tmp_path / "pwned"
    call = f"touch {marker}" if name == "system" else f"open({str(marker)!r}, 'w')"
    # hand-written protocol-2 pickle: GLOBAL module name, one-string tuple, REDUCE
    raw = (b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + len(call).to_bytes(4, "little")
           + call.encode() + b"\x85R.")
    path = tmp_path / "evil.bin"
    path.write_bytes(raw)
    with pytest.raises(UserError) as info:
        load_bin(path)
    message = str(info.value)
    assert str(path) in message and f"{module}.{name}" in message and "\n" not in message
    assert not marker.exists()


def test_codecs_encode_only_for_text_encodings(tmp_path):
    raw = b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x04\x00\x00\x00zlibq\x00\x86R."
    (tmp_path / "z.bin").write_bytes(raw)
    with pytest.raises(UserError, match="encoding 'zlib' is not allowed"):
        load_bin(tmp_path / "z.bin")


@pytest.mark.parametrize("payload, match", [
    (([b"a", b"b", b"c"], [True]), "odd number of images"),
    (([b"a", b"b", b"c", b"d"], [True]), "4 images but 1 issame"),
    (([b"a", b"b"], [2]), "booleans"),
    (([b"a", 7], [True]), "image 1 is a int"),
    ({"images": []}, "expected a pickled pair"),
])
def test_invalid_contents(tmp_path, payload, match):
    (tmp_path / "bad.bin").write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(UserError, match=match):
        load_bin(tmp_path / "bad.bin")


def test_not_a_pickle_truncated_and_missing(tmp_path):
    (tmp_path / "text.bin").write_text("hello, not a pickle\n")
    good = pickle.dumps(([b"a", b"b"], [True]), protocol=4)
    (tmp_path / "cut.bin").write_bytes(good[: len(good) // 2])
    for name in ("text.bin", "cut.bin"):
        with pytest.raises(UserError, match="not a valid .bin"):
            load_bin(tmp_path / name)
    with pytest.raises(UserError, match="cannot read"):
        load_bin(tmp_path / "absent.bin")


def test_save_bin_rejects_mismatch(tmp_path):
    with pytest.raises(UserError):
        save_bin(tmp_path / "x.bin", [b"a", b"b", b"c"], [True])
    assert not (tmp_path / "x.bin").exists()


def test_user_error_becomes_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "text.bin").write_text("junk")

    def main(argv):
        load_bin(tmp_path / "text.bin")

    with pytest.raises(SystemExit) as info:
        run_cli(main, [])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
