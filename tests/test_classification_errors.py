"""Bad classification input through the CLIs: one `error:` line, exit 2, no run directory written."""
from __future__ import annotations

import os
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from data_tools.cifar_pickle import dumps_py2
from facenar_runtime.cli import run_cli
from facenar.search.cli import main as search
from facenar.train.cli import main as train

NET = ["--backbone", "iresnet18", "--width", "0.125", "--embedding-size", "64", "--input-size", "32",
       "--device", "cpu", "--workers", "0"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> Path:
    from data_tools.cifar_demo import make_demo_cifar

    return make_demo_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py", 10, 2)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    from data_tools.imagefolder import make_demo_imagefolder

    return make_demo_imagefolder(tmp_path_factory.mktemp("folder") / "tree", 2, 1)


def _fails(cli, argv, capsys, out: Path) -> str:
    with pytest.raises(SystemExit) as stop:
        run_cli(cli, [*argv, "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not out.exists()  # nothing half-written
    return err


def _copy(cifar: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(cifar, tmp_path / "cifar-10-batches-py"))


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("cli", [search, train])
def test_foreign_pickle_global_is_refused_never_executed(cli, cifar, tmp_path, capsys):
    data = _copy(cifar, tmp_path)
    marker = tmp_path / "executed"
    (data / "data_batch_3").write_bytes(pickle.dumps({b"data": _Payload(marker)}, protocol=2))
    err = _fails(cli, ["--task", "cifar10", "--data", str(data), *NET], capsys, tmp_path / "run")
    assert "data_batch_3" in err and ".system" in err and not marker.exists()


def test_truncated_tarball(cifar, tmp_path, capsys):
    tarball = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(cifar, arcname="cifar-10-batches-py")
    tarball.write_bytes(tarball.read_bytes()[: tarball.stat().st_size // 2])
    err = _fails(train, ["--task", "cifar10", "--data", str(tarball), *NET], capsys, tmp_path / "run")
    assert "cifar-10-python.tar.gz" in err


@pytest.mark.parametrize("batch,expected", [
    ({b"data": np.zeros((7, 3000), np.uint8), b"labels": [0] * 7}, "3072"),
    ({b"data": np.zeros((7, 3072), np.uint8), b"labels": [0] * 3}, "7 images but 3 labels"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "0..9"),
])
def test_bad_batch_shape_count_or_labels(batch, expected, cifar, tmp_path, capsys):
    data = _copy(cifar, tmp_path)
    (data / "test_batch").write_bytes(dumps_py2({b"batch_label": b"testing batch 1 of 1", **batch,
                                                b"filenames": [b"x.png"] * len(batch[b"labels"])}))
    err = _fails(train, ["--task", "cifar10", "--data", str(data), *NET], capsys, tmp_path / "run")
    assert "test_batch" in err and expected in err  # the test split is checked before anything is written


def test_undecodable_image_is_named_through_dataloader_workers(folder, tmp_path, capsys):
    """Found when decoded (a full pass up front would cost an epoch): the run stops before any checkpoint."""
    tree = Path(shutil.copytree(folder, tmp_path / "tree"))
    broken = sorted((tree / "train" / "ring").iterdir())[0]
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(SystemExit) as stop:
        run_cli(train, ["--task", "imagenet", "--data", str(tree), *NET, "--workers", "1", "--batch-size", "4",
                        "--epochs", "1", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the run log's opening lines
    assert stop.value.code == 2 and err.startswith("error: ") and str(broken) in err and "cannot decode" in err
    assert not (tmp_path / "run" / "last.pt").exists()


def test_val_class_that_train_lacks(folder, tmp_path, capsys):
    tree = Path(shutil.copytree(folder, tmp_path / "tree"))
    shutil.copytree(tree / "val" / "ring", tree / "val" / "zebra")
    for cli in (search, train):
        err = _fails(cli, ["--task", "imagenet", "--data", str(tree), *NET], capsys, tmp_path / "run")
        assert "zebra" in err and "training split lacks" in err


@pytest.mark.parametrize("cli,option", [(train, ["--bench", "lfw"]), (train, ["--sample-rate", "0.5"]),
                                        (train, ["--margin", "cosface"]), (search, ["--scale", "30"]),
                                        (search, ["--margin-m", "0.2"])])
def test_task_with_an_option_of_another_task(cli, option, cifar, tmp_path, capsys):
    err = _fails(cli, ["--task", "cifar10", "--data", str(cifar), *NET, *option], capsys, tmp_path / "run")
    flag = {"--margin-m": "--margin-m2"}.get(option[0], option[0])
    assert f"{flag} is an option of the face task" in err and "--task cifar10" in err


def test_cifar10_needs_32_pixel_inputs(cifar, tmp_path, capsys):
    err = _fails(search, ["--task", "cifar10", "--data", str(cifar), *NET[:6], "--input-size", "48"], capsys,
                 tmp_path / "run")
    assert "--input-size 32" in err
