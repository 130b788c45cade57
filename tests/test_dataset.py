"""facenar.data: decoding, normalisation, labels from identity records, augmentation, loaders."""
from __future__ import annotations

import pickle
import random

import cv2
import numpy as np
import pytest
import torch

from facenar_runtime.errors import UserError
from data_tools.emore import write_emore, write_property
from facenar.data import RecordFaceDataset, decode_image, device_input, make_loader
from tests.jpeg_data import write_jpeg_emore


def png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


@pytest.fixture()
def lossless(tmp_path):
    """2 identities of asymmetric PNG images (left half red, right half blue), exact pixels known."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (8, 6, 3), dtype=np.uint8) for _ in range(5)]
    for image in images:
        image[:, :3] = (255, 0, 0)
    write_emore(tmp_path, [[png(images[0]), png(images[1])], [], [png(im) for im in images[2:]]])
    write_property(tmp_path, 3, (8, 6))
    return tmp_path, images


def test_decode_image_is_rgb_and_errors_name_the_record():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    assert (decode_image(png(rgb)) == rgb).all()
    with pytest.raises(UserError, match="train.rec key 9: cannot decode"):
        decode_image(b"garbage", "train.rec key 9")
    with pytest.raises(UserError, match="cannot decode the image \\(0 bytes\\)"):
        decode_image(b"")


def test_items_are_uint8_rgb_normalised_on_the_device(lossless):
    folder, images = lossless
    ds = RecordFaceDataset(folder, augment="none")
    assert len(ds) == 5 and ds.targets.tolist() == [0, 0, 2, 2, 2]
    tensor, label = ds[3]
    assert label == 2 and tensor.dtype == torch.uint8 and tensor.shape == (3, 8, 6)
    assert torch.equal(tensor, torch.from_numpy(images[3]).permute(2, 0, 1))
    batch = device_input(tensor[None], torch.device("cpu"))
    expected = (torch.from_numpy(images[3]).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    assert batch.dtype == torch.float32 and torch.equal(batch[0], expected)
    assert batch.min() >= -1 and batch.max() <= 1
    floats = torch.rand(1, 3, 2, 2)  # a dataset that normalises itself (the classification tasks') passes
    assert device_input(floats, torch.device("cpu")) is floats


def test_input_size_resizes(lossless):
    folder, _ = lossless
    assert RecordFaceDataset(folder, augment="none", input_size=4)[0][0].shape == (3, 4, 4)
    assert RecordFaceDataset(folder, augment="none", input_size=(10, 12))[0][0].shape == (3, 10, 12)


def test_flip_follows_global_random_seed(lossless):
    folder, _ = lossless
    ds = RecordFaceDataset(folder, augment="flip")
    plain = RecordFaceDataset(folder, augment="none")[0][0]
    outcomes = set()
    for seed in range(16):
        random.seed(seed)
        first = ds[0][0]
        random.seed(seed)
        assert torch.equal(first, ds[0][0])  # same seed, same augmentation
        flipped = torch.equal(first, plain.flip(-1))
        assert flipped or torch.equal(first, plain)
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_strong_augment_and_bad_choice(tmp_path):
    write_jpeg_emore(tmp_path, [3, 3], (32, 32))
    ds = RecordFaceDataset(tmp_path, augment="strong")
    random.seed(1)
    batch = torch.stack([ds[i][0] for i in range(len(ds))])
    assert batch.shape == (6, 3, 32, 32) and batch.dtype == torch.uint8
    with pytest.raises(UserError, match="unknown augmentation 'mixup'"):
        RecordFaceDataset(tmp_path, augment="mixup")


def test_undecodable_record_names_the_key(tmp_path):
    write_emore(tmp_path, [[b"not an image"]])
    write_property(tmp_path, 1, (8, 8))
    with pytest.raises(UserError, match=r"train\.rec key 1: cannot decode"):
        RecordFaceDataset(tmp_path)[0]


def test_make_loader_with_two_workers_is_repeatable(tmp_path):
    write_jpeg_emore(tmp_path, [4, 4, 4], (16, 16))
    ds = RecordFaceDataset(tmp_path, augment="strong")
    assert len(pickle.loads(pickle.dumps(ds))) == 12

    def epoch(seed):
        return [(x, y) for x, y in make_loader(ds, 4, shuffle=True, seed=seed, workers=2)]

    first, again, other = epoch(5), epoch(5), epoch(6)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again))
    assert sorted(torch.cat([y for _, y in first]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    assert any(not torch.equal(a[0], b[0]) for a, b in zip(first, other))


def test_proxy_of_the_demo_data_loads_as_training_tensors(tiny_demo, tmp_path):
    from data_tools.proxy import build_proxy

    build_proxy(tiny_demo, tmp_path / "proxy", num_ids=5, per_id=10, val_per_id=2, seed=0)
    val = RecordFaceDataset(tmp_path / "proxy", prefix="val", augment="none")
    assert len(val) == 10 and sorted(val.targets.tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    image, _ = val[0]
    assert image.shape == (3, 112, 112) and image.float().std() > 5  # real drawn faces, not blank
    small = RecordFaceDataset(tmp_path / "proxy", augment="flip", input_size=56)
    assert len(small) == 40 and small[39][0].shape == (3, 56, 56)


def test_proxy_split_parses_each_split_once_and_normalises_like_the_dataset(tiny_demo, tmp_path, monkeypatch):
    from data_tools import emore
    from data_tools.proxy import build_proxy
    from facenar.data import ProxyData, normalize

    build_proxy(tiny_demo, tmp_path / "proxy", num_ids=5, per_id=10, val_per_id=2, seed=0)
    opened = []
    real_init = emore.EmoreDataset.__init__
    monkeypatch.setattr(emore.EmoreDataset, "__init__",
                        lambda self, folder, prefix="train": opened.append(prefix) or real_init(self, folder, prefix))
    data = ProxyData(tmp_path / "proxy", input_size=32, augment="none")
    images, labels = data.val_set(torch.device("cpu"))
    assert sorted(opened) == ["train", "val"]  # one parse per split, also after decoding proxy-val
    plain = RecordFaceDataset(tmp_path / "proxy", prefix="val", augment="none", input_size=32)
    assert torch.equal(images[3], plain[3][0]) and int(labels[3]) == plain[3][1]
    assert torch.equal(data.to_input(images[3:4]), device_input(plain[3][0][None], torch.device("cpu")))
    assert torch.equal(normalize(torch.tensor([0, 255], dtype=torch.uint8)), torch.tensor([-1.0, 1.0]))


def test_proxy_data_names_what_is_wrong_with_the_folder(tmp_path):
    from facenar.data import ProxyData

    with pytest.raises(UserError, match="does not exist"):
        ProxyData(tmp_path / "missing", input_size=32)
    (tmp_path / "split.md").write_text("not a folder")
    with pytest.raises(UserError, match="split.md is not a folder"):
        ProxyData(tmp_path / "split.md", input_size=32)
    with pytest.raises(UserError, match="is not a proxy split: train.rec, train.idx missing"):
        ProxyData(tmp_path, input_size=32)
