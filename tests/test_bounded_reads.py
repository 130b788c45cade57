"""Issue 19, items 12-14 and 17: bounded binary reads, ImageFolder link loops, damaged tables and
foreign models as one line, machine faults during export, python3 re-pickles of CIFAR."""
from __future__ import annotations

import errno
import os
import pickle
import tarfile
import time

import numpy as np
import pytest

from data_tools import binfile, cifar
from data_tools.binfile import load_bin, save_bin
from data_tools.cifar import META, TEST_BATCH, load_cifar
from facenar_runtime.cli import run_cli
from facenar_runtime.errors import machine_fault
from facenar_runtime.errors import EnvironmentFault, UserError
from data_tools.imagefolder import scan_split
from facenar_runtime.textinput import read_bytes, read_csv
from jpeg_data import jpeg
from test_cifar import NAMES, batch_dict, write_folder


def _cifar_folder(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    write_folder(folder)
    return folder


def _cifar_tarball(tmp_path):
    folder = _cifar_folder(tmp_path)
    path = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(os.listdir(folder)):
            tar.add(folder / name, arcname=f"cifar-10-batches-py/{name}")
    return path


# every reader of a binary file read whole: (make a valid input, the file in it to swap, read it, its limit)
READERS = {
    ".bin": (lambda tmp: save_bin(tmp / "lfw.bin", [b"a", b"b"], [True]) or tmp / "lfw.bin", "",
             load_bin, (binfile, "MAX_BIN_BYTES")),
    "CIFAR folder": (_cifar_folder, TEST_BATCH, lambda path: load_cifar(path, "test"), (cifar, "MAX_BATCH_BYTES")),
}


def _tiny_model(path):
    from facenar.checkpoint import save_model
    from facenar.space.arch import Arch
    from facenar.space.iresnet import build_child

    arch = Arch("iresnet18", [0] * 8, width=0.0625, input_size=32, embedding_size=8)
    save_model(path, arch, build_child(arch))
    return path


# -- 13: sizes are checked against what the format can hold before reading --------------------------------
@pytest.mark.parametrize("reader", READERS)
def test_13_a_link_to_dev_zero_or_a_fifo_is_refused_at_once(reader, tmp_path):
    make, member, read, _ = READERS[reader]
    source = make(tmp_path)
    target = source / member if member else source
    for special in ("zero", "fifo"):
        target.unlink()
        if special == "zero":
            target.symlink_to("/dev/zero")
        else:
            os.mkfifo(target)
        started = time.perf_counter()
        with pytest.raises(UserError, match="is not a regular file"):
            read(source)
        assert time.perf_counter() - started < 5


@pytest.mark.parametrize("reader", READERS)
def test_13_a_file_larger_than_the_format_holds_is_refused_before_reading(reader, tmp_path, monkeypatch):
    make, member, read, (module, limit) = READERS[reader]
    source = make(tmp_path)
    target = source / member if member else source
    monkeypatch.setattr(module, limit, 100)
    with open(target, "r+b") as handle:
        handle.truncate(1 << 40)   # a sparse terabyte: reading it would never end
    with pytest.raises(UserError, match=r"more than a .* can hold \(100 bytes\)"):
        read(source)


def test_13_a_tar_member_that_inflates_beyond_a_batch_is_not_read(tmp_path, monkeypatch):
    path = _cifar_tarball(tmp_path)
    load_cifar(path, "test")
    monkeypatch.setattr(cifar, "MAX_BATCH_BYTES", 1000)   # the 5 GiB data_batch_1 of a 23 MB tar.gz, scaled down
    original = tarfile.TarFile.extractfile

    def extract(tar, member):
        assert member.size <= 1000, f"{member.name} was inflated"
        return original(tar, member)

    monkeypatch.setattr(tarfile.TarFile, "extractfile", extract)
    with pytest.raises(UserError, match=r"cifar-10-batches-py/\w+ would inflate to .* more than a CIFAR batch"):
        load_cifar(path, "test")


def test_13_verify_with_a_bin_linked_to_dev_zero_is_one_line(tmp_path, capsys):
    from facenar.verify import cli as verify_cli

    model = _tiny_model(tmp_path / "best.pt")
    data = tmp_path / "data"
    data.mkdir()
    (data / "lfw.bin").symlink_to("/dev/zero")
    with pytest.raises(SystemExit) as info:
        run_cli(verify_cli.main, ["--data", str(data), "--bench", "lfw", "--model", str(model)])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err and "is not a regular file" in err, err


def test_13_read_bytes_names_missing_files_and_folders(tmp_path):
    with pytest.raises(UserError, match="cannot read thing .*absent: No such file"):
        read_bytes(tmp_path / "absent", "thing", 10)
    with pytest.raises(UserError, match="is a folder"):
        read_bytes(tmp_path, "thing", 10)
    (tmp_path / "ok").write_bytes(b"0123456789")
    assert read_bytes(tmp_path / "ok", "thing", 10) == b"0123456789"


# -- 14: ImageFolder visits each directory once ---------------------------------------------------------
def test_14_link_loops_neither_repeat_nor_mislabel_nor_hang(tmp_path):
    train = tmp_path / "train"
    for name in ("a", "b"):
        (train / name).mkdir(parents=True)
        (train / name / f"{name}.jpg").write_bytes(jpeg(0))
    (train / "a" / "up").symlink_to(train)            # a loop through the split's root
    (train / "a" / "to_b").symlink_to(train / "b")    # another class's images, which must stay b's
    (train / "b" / "self").symlink_to(train / "b")    # a second loop: before, the walk never ended
    (train / "b" / "broken").symlink_to(tmp_path / "missing")
    (tmp_path / "shard" / "deep").mkdir(parents=True)  # a link to a folder elsewhere is followed once
    (tmp_path / "shard" / "deep" / "s.jpg").write_bytes(jpeg(1))
    (train / "a" / "shard").symlink_to(tmp_path / "shard")
    (train / "b" / "shard_again").symlink_to(tmp_path / "shard")
    split = scan_split(train)
    found = sorted((str(p.relative_to(train)), int(label)) for p, label in zip(split.paths, split.labels))
    assert found == [("a/a.jpg", 0), ("a/shard/deep/s.jpg", 0), ("b/b.jpg", 1)]


# -- 12: damaged tables, non-UTF-8 class names, a 0x0 model ------------------------------------------------
def test_12_a_csv_field_over_the_csv_limit_is_one_line(tmp_path):
    from facenar.rundir import MetricsCSV
    from facenar.search.fig1 import read_run

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"space": "enas", "skip_weight": 0}')
    field = '"' + ("9" * 1000 + "\n") * 200 + '"'   # short lines, one quoted field of 200 kB
    (run / "search.csv").write_text(f"epoch,skip_prob\n1,{field}\n")
    with pytest.raises(UserError, match=r"search record .*search.csv is damaged \(field larger than field limit"):
        read_run(run)
    with pytest.raises(UserError, match=r"metrics table .* is damaged .*; remove it or start a new run"):
        MetricsCSV(run / "search.csv", ["epoch"], "epoch").read()
    (run / "ok.csv").write_text("a,b\n1,2\n")
    assert read_csv(run / "ok.csv", "table") == [{"a": "1", "b": "2"}]


def test_12_non_utf8_class_names_are_one_line(tmp_path):
    write_folder(tmp_path, **{META: {b"label_names": [b"\xff\xfe"] + NAMES[1:], b"num_vis": 3072}})
    with pytest.raises(UserError, match=r"batches.meta: a class name in label_names is not UTF-8"):
        load_cifar(tmp_path, "test")


def test_12_an_onnx_model_with_a_static_0x0_input_is_one_line(tmp_path):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from facenar.verify.embed import OnnxEmbedder
    from test_command_errors import _onnx

    float32 = TensorProto.FLOAT
    model = _onnx(tmp_path / "empty.onnx", [helper.make_node("Flatten", ["x"], ["y"])],
                  [helper.make_tensor_value_info("x", float32, [1, 3, 0, 0])],
                  helper.make_tensor_value_info("y", float32, [1, 0]))
    with pytest.raises(UserError, match=r"empty.onnx: input is 0x0; a face crop needs at least one pixel"):
        OnnxEmbedder(model)


# -- 17: misclassified errors ----------------------------------------------------------------------------
def test_17_python3_protocol2_repickle_with_an_empty_batch_label_is_read(tmp_path):
    batch = batch_dict(0, override={b"batch_label": b""})
    write_folder(tmp_path, dumps=lambda value: pickle.dumps(value, protocol=2), **{TEST_BATCH: batch})
    assert b"c__builtin__\nbytes\n" in (tmp_path / TEST_BATCH).read_bytes()  # how python3 writes b"" there
    np.testing.assert_array_equal(load_cifar(tmp_path, "test").labels, batch[b"labels"])
    # bytes() with an argument is no empty byte string: bytes(2**40) would allocate a terabyte
    bomb = b"\x80\x02c__builtin__\nbytes\nq\x00\x8a\x06\x00\x00\x00\x00\x00\x01\x85q\x01Rq\x02."
    (tmp_path / TEST_BATCH).write_bytes(bomb)
    with pytest.raises(UserError, match="not a CIFAR batch pickle.*bytes\\(\\) with arguments is not allowed"):
        load_cifar(tmp_path, "test")


def _wrapped_oserror() -> Exception:
    error = RuntimeError("onnx save failed")
    error.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    return error


@pytest.mark.parametrize("wrapped", [
    _wrapped_oserror, lambda: ValueError("serialize: [Errno 28] No space left on device: '/tmp/x'"),
], ids=["cause", "text"])
def test_17_disk_full_during_export_is_a_machine_fault_without_the_opset(wrapped, tmp_path, monkeypatch, capsys):
    import torch

    from facenar import export

    _tiny_model(tmp_path / "best.pt")

    monkeypatch.setattr(torch.onnx, "export", _raiser(wrapped))
    with pytest.raises(SystemExit) as info:
        run_cli(export.main, ["--checkpoint", str(tmp_path / "best.pt"), "--out", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "opset" not in err and "Traceback" not in err, err
    assert f"error: cannot write {tmp_path / 'm.onnx'}: No space left on device" in err
    assert os.listdir(tmp_path) == ["best.pt"]


def _raiser(make):
    def raise_it(*args, **kwargs):
        raise make()
    return raise_it


def test_17_machine_fault_finds_the_reason_behind_wrappers():
    try:
        try:
            raise OSError(errno.EIO, "Input/output error")
        except OSError:
            raise RuntimeError("writer failed")   # implicit context, no cause
    except RuntimeError as exc:
        assert machine_fault(exc) == "Input/output error"
    assert machine_fault(ValueError("opset 99 is not supported")) is None
    assert issubclass(EnvironmentFault, UserError) and EnvironmentFault.exit_code == 1
