"""CIFAR-10 python-format reader, its bad inputs, the demo data and the CIFAR training tensors."""
from __future__ import annotations

import os
import pickle
import tarfile

import numpy as np
import pytest
import torch

from data_tools.cifar import META, TEST_BATCH, TRAIN_BATCHES, holdout_split, load_cifar
from data_tools.cifar_demo import CLASSES, ensure_demo_cifar, make_demo_cifar
from data_tools.cifar_pickle import dumps_py2
from facenar_runtime.errors import UserError
from facenar_runtime.safe_pickle import ForbiddenGlobal, restricted_loads

NAMES = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]


def batch_dict(seed: int, count: int = 7, override: dict | None = None) -> dict:
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"training batch", b"labels": rng.integers(0, 10, count).tolist(),
             b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
             b"filenames": [f"img_{i}.png".encode() for i in range(count)]}
    batch.update(override or {})
    return batch


def write_folder(folder, dumps=dumps_py2, **batches):
    """A cifar-10-batches-py folder of random batches; keyword arguments replace single files' dicts."""
    folder.mkdir(parents=True, exist_ok=True)
    contents = {name: batch_dict(i) for i, name in enumerate((*TRAIN_BATCHES, TEST_BATCH))}
    contents[META] = {b"num_cases_per_batch": 7, b"label_names": NAMES, b"num_vis": 3072}
    contents.update(batches)
    for name, value in contents.items():
        if value is not None:
            (folder / name).write_bytes(value if isinstance(value, bytes) else dumps(value))
    return contents


def as_nhwc(data: np.ndarray) -> np.ndarray:
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_python2_style_batches_read_back_exactly(tmp_path):
    contents = write_folder(tmp_path / "cifar-10-batches-py")
    raw = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert raw.startswith(b"\x80\x02}q\x01(U\x0bbatch_label")  # protocol 2, py2 byte-string keys
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw and b"_codecs" not in raw
    train = load_cifar(tmp_path)  # the parent folder is found too
    expected = np.concatenate([contents[name][b"data"] for name in TRAIN_BATCHES])
    assert train.images.dtype == np.uint8 and train.images.shape == (35, 32, 32, 3)
    np.testing.assert_array_equal(train.images, as_nhwc(expected))
    assert train.labels.dtype == np.int64
    assert train.labels.tolist() == sum((contents[name][b"labels"] for name in TRAIN_BATCHES), [])
    assert train.classes[0] == "airplane" and len(train.classes) == 10
    test = load_cifar(tmp_path / "cifar-10-batches-py", "test")
    np.testing.assert_array_equal(test.images, as_nhwc(contents[TEST_BATCH][b"data"]))


def test_channel_planes_become_rgb_pixels(tmp_path):
    data = np.zeros((1, 3072), np.uint8)
    data[0, :1024], data[0, 1024:2048], data[0, 2048:] = 10, 20, 30  # R plane, G plane, B plane
    data[0, 1] = 99  # red of row 0, column 1
    write_folder(tmp_path, test_batch=batch_dict(0, 1, {b"data": data, b"labels": [3]}))
    image = load_cifar(tmp_path, "test").images[0]
    assert image[0, 0].tolist() == [10, 20, 30] and image[0, 1].tolist() == [99, 20, 30]


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_repickled_by_python3_numpy2_are_read(tmp_path, protocol):
    contents = write_folder(tmp_path, dumps=lambda value: pickle.dumps(value, protocol=protocol))
    np.testing.assert_array_equal(load_cifar(tmp_path, "test").images, as_nhwc(contents[TEST_BATCH][b"data"]))


def make_tarball(folder, path, drop=()):
    with tarfile.open(path, "w:gz") as tar:
        for name in sorted(os.listdir(folder)):
            if name not in drop:
                tar.add(folder / name, arcname=f"cifar-10-batches-py/{name}")
    return path


def test_tarball_reads_like_the_folder(tmp_path):
    write_folder(tmp_path / "cifar-10-batches-py")
    tarball = make_tarball(tmp_path / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    for split in ("train", "test"):
        from_tar, from_folder = load_cifar(tarball, split), load_cifar(tmp_path / "cifar-10-batches-py", split)
        np.testing.assert_array_equal(from_tar.images, from_folder.images)
        np.testing.assert_array_equal(from_tar.labels, from_folder.labels)
        assert from_tar.classes == from_folder.classes
    (tmp_path / "only_tar").mkdir()
    os.replace(tarball, tmp_path / "only_tar" / "cifar-10-python.tar.gz")
    assert len(load_cifar(tmp_path / "only_tar", "test").labels) == 7  # a folder holding the tarball


class _WritesMarker:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


@pytest.mark.parametrize("kind", ["os.system", "reduce-class"])
def test_foreign_pickle_global_is_refused_never_run(tmp_path, kind):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        evil = b"\x80\x02cos\nsystem\nX" + len(f"touch {marker}").to_bytes(4, "little") + f"touch {marker}".encode() \
            + b"\x85R."
        named = "os.system"
    else:
        evil = pickle.dumps(batch_dict(0, override={b"labels": _WritesMarker(marker)}), protocol=2)
        named = "io.open"
    write_folder(tmp_path / "data", data_batch_3=evil)
    with pytest.raises(UserError) as info:
        load_cifar(tmp_path / "data")
    message = str(info.value)
    assert "data_batch_3" in message and named in message and "forbidden global" in message
    assert "\n" not in message
    assert not marker.exists()
    with pytest.raises(ForbiddenGlobal):
        restricted_loads(evil)
    assert not marker.exists()
    pickle.loads(evil, encoding="bytes")  # control: a plain unpickler does run it
    assert marker.exists()


def test_truncated_and_corrupt_tarballs(tmp_path):
    write_folder(tmp_path / "cifar-10-batches-py")
    tarball = make_tarball(tmp_path / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz")
    raw = tarball.read_bytes()
    tarball.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(UserError, match="truncated"):
        load_cifar(tarball)
    tarball.write_bytes(b"not a tarball at all" * 10)
    with pytest.raises(UserError, match="truncated or not a CIFAR tar.gz"):
        load_cifar(tarball)


def test_missing_batch_is_named(tmp_path):
    write_folder(tmp_path / "cifar-10-batches-py", data_batch_4=None)
    with pytest.raises(UserError, match="data_batch_4 is missing"):
        load_cifar(tmp_path)
    assert len(load_cifar(tmp_path, "test").labels) == 7  # the test split does not need it
    tarball = make_tarball(tmp_path / "cifar-10-batches-py", tmp_path / "c.tar.gz", drop=("test_batch",))
    with pytest.raises(UserError, match="has no test_batch"):
        load_cifar(tarball, "test")
    with pytest.raises(UserError, match="neither"):
        load_cifar(tmp_path / "nowhere")


@pytest.mark.parametrize("override, match", [
    ({b"data": np.zeros((7, 3000), np.uint8)}, r"data is uint8 \[7, 3000\], expected a uint8 \[N, 3072\]"),
    ({b"data": np.zeros((7, 32, 32, 3), np.uint8)}, r"data is uint8 \[7, 32, 32, 3\]"),
    ({b"data": np.zeros((7, 3072), np.float32)}, "data is float32"),
    ({b"labels": [1, 2, 3]}, "7 images but 3 labels"),
    ({b"labels": [0, 1, 2, 3, 4, 5, 10]}, r"labels must lie in 0..9, found 0..10"),
    ({b"labels": [-1, 1, 2, 3, 4, 5, 6]}, r"labels must lie in 0..9"),
    ({b"labels": [[1]] * 7}, "flat list of ints"),
])
def test_malformed_batches(tmp_path, override, match):
    write_folder(tmp_path, data_batch_2=pickle.dumps(batch_dict(0, override=override), protocol=2))
    with pytest.raises(UserError, match=match) as info:
        load_cifar(tmp_path)
    assert "data_batch_2" in str(info.value)


def test_malformed_pickles_and_meta(tmp_path):
    write_folder(tmp_path, test_batch=dumps_py2(batch_dict(0))[:-200])
    with pytest.raises(UserError, match="test_batch is not a CIFAR batch pickle"):
        load_cifar(tmp_path, "test")
    write_folder(tmp_path, test_batch={b"labels": [1]})
    with pytest.raises(UserError, match="needs 'data' and 'labels'"):
        load_cifar(tmp_path, "test")
    write_folder(tmp_path, **{META: {b"label_names": NAMES[:9]}})
    with pytest.raises(UserError, match="batches.meta: label_names must be a list of 10"):
        load_cifar(tmp_path, "test")


def test_holdout_split_is_seeded_and_disjoint():
    kept, held = holdout_split(50000, 5000, seed=3)
    assert len(kept) == 45000 and len(held) == 5000
    assert not set(kept.tolist()) & set(held.tolist())
    np.testing.assert_array_equal(holdout_split(50000, 5000, seed=3)[1], held)
    assert not np.array_equal(holdout_split(50000, 5000, seed=4)[1], held)
    with pytest.raises(UserError, match="cannot hold out"):
        holdout_split(100, 100, 0)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return make_demo_cifar(tmp_path_factory.mktemp("demo") / "cifar-10-batches-py", 60, 20, seed=0)


def test_demo_is_the_official_format_and_deterministic(small_demo, tmp_path):
    train, test = load_cifar(small_demo), load_cifar(small_demo, "test")
    assert train.images.shape == (600, 32, 32, 3) and test.images.shape == (200, 32, 32, 3)
    assert np.bincount(train.labels).tolist() == [60] * 10 and train.classes == CLASSES
    batch = pickle.loads((small_demo / "data_batch_1").read_bytes(), encoding="bytes")  # the reference reader
    assert list(batch) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert batch[b"data"].shape == (120, 3072) and batch[b"data"].dtype == np.uint8
    assert batch[b"batch_label"] == b"training batch 1 of 5" and isinstance(batch[b"labels"][0], int)
    meta = pickle.loads((small_demo / "batches.meta").read_bytes(), encoding="bytes")
    assert meta[b"label_names"][0] == b"disc" and meta[b"num_vis"] == 3072
    again = make_demo_cifar(tmp_path / "again", 60, 20, seed=0)
    for name in (*TRAIN_BATCHES, TEST_BATCH, META):
        assert (again / name).read_bytes() == (small_demo / name).read_bytes()


def test_demo_is_learnable_from_raw_pixels(small_demo):
    """Kernel ridge regression on raw pixels: well above chance (10%) and above 50%."""
    train, test = load_cifar(small_demo), load_cifar(small_demo, "test")
    features = lambda images: images.reshape(len(images), -1).astype(np.float64) / 255 - 0.5
    x, xt = features(train.images), features(test.images)
    weights = np.linalg.solve(x @ x.T + 10 * np.eye(len(x)), np.eye(10)[train.labels])
    accuracy = ((xt @ x.T @ weights).argmax(1) == test.labels).mean()
    assert accuracy > 0.5, accuracy


def test_ensure_demo_cifar_generates_once(monkeypatch, capsys):
    from data_tools import cifar_demo

    monkeypatch.setattr(cifar_demo, "DEFAULTS", {"train_per_class": 3, "test_per_class": 2, "seed": 0})
    folder = ensure_demo_cifar()
    assert folder.name == "cifar-10-batches-py" and "generating" in capsys.readouterr().err
    assert ensure_demo_cifar() == folder and capsys.readouterr().err == ""
    assert len(load_cifar(folder).labels) == 30


def test_make_demo_cifar_cli_refuses_existing_output(tmp_path, capsys):
    from facenar_runtime.cli import run_cli
    from data_tools.make_demo_cifar import main

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, ["--out", str(tmp_path), "--train-per-class", "1", "--test-per-class", "1"])
    assert exit_info.value.code == 2 and "already exists" in capsys.readouterr().err


def test_cifar_training_tensors(small_demo):
    from facenar.tasks.classification_data import CIFAR10_MEAN, CIFAR10_STD, open_cifar
    from facenar.data import SeededSamples

    search_train = open_cifar(small_demo, "search_train", seed=1)
    search_val = open_cifar(small_demo, "search_val", seed=1)
    assert len(search_train) == 540 and len(search_val) == 60  # a tenth held out on a small set
    test = open_cifar(small_demo, "test")
    image, label = test[0]
    expected = (torch.from_numpy(test.images[0]).permute(2, 0, 1) / 255 - torch.tensor(CIFAR10_MEAN)[:, None, None]) \
        / torch.tensor(CIFAR10_STD)[:, None, None]
    assert image.shape == (3, 32, 32) and label == test.labels[0]
    torch.testing.assert_close(image, expected)
    assert not test.augment and search_train.augment and not search_val.augment
    samples = SeededSamples(search_train, seed=5)
    first = torch.stack([samples[i][0] for i in range(20)])
    torch.testing.assert_close(torch.stack([samples[i][0] for i in range(20)]), first)  # same (seed, epoch, i)
    samples.epoch = 1
    assert not torch.equal(torch.stack([samples[i][0] for i in range(20)]), first)  # a new epoch re-draws
    plain = torch.stack([open_cifar(small_demo, "search_val", seed=1)[i][0] for i in range(3)])
    assert torch.equal(plain, torch.stack([search_val[i][0] for i in range(3)]))


def test_pad_crop_flip_keeps_pixels(small_demo):
    from facenar.tasks.classification_data import CifarImages

    images = np.random.default_rng(0).integers(1, 256, (1, 32, 32, 3), dtype=np.uint8)  # no zero pixels
    dataset = CifarImages(images, np.zeros(1, np.int64), CLASSES, augment=True)
    seen_pad = seen_flip = False
    for seed in range(40):
        np.random.seed(seed)
        out, _ = dataset[0]
        raw = out * torch.tensor([0.2470, 0.2435, 0.2616])[:, None, None] + torch.tensor([0.4914, 0.4822, 0.4465])[:, None, None]
        raw = (raw * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        zero_rows = (raw == 0).all(axis=(1, 2)).sum() + (raw == 0).all(axis=(0, 2)).sum()
        assert zero_rows <= 8  # at most 4 padded rows and 4 padded columns show
        seen_pad |= zero_rows > 0
        inner = raw[4:28, 4:28]
        seen_flip |= any((np.flip(images[0], 1)[y:y + 24, x:x + 24] == inner).all()
                         for y in range(9) for x in range(9)) and not any(
            (images[0][y:y + 24, x:x + 24] == inner).all() for y in range(9) for x in range(9))
    assert seen_pad and seen_flip


def test_data_modules_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, data_tools.cifar, data_tools.cifar_demo, data_tools.cifar_pickle, data_tools.imagefolder, "
            "facenar_runtime.safe_pickle, data_tools.make_demo_cifar; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
