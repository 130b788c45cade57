"""ImageFolder trees: scanning, bad inputs, the reduced JPEG decoder and the ImageNet-style tensors."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from facenar_runtime.errors import UserError
from data_tools.imagefolder import (decode_image, ensure_demo_imagefolder, jpeg_size, read_image_bytes, reduction,
                                    scan_imagefolder, scan_split)


def write_image(path, height=40, width=60, ext=".jpg", seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (width, height), interpolation=cv2.INTER_LINEAR)
    path.write_bytes(cv2.imencode(ext, image)[1].tobytes())
    return path


@pytest.fixture
def tree(tmp_path):
    for name, ext in (("b_dog", ".JPEG"), ("a_cat", ".jpg"), ("c_eel", ".PnG")):
        for i in range(3):
            write_image(tmp_path / "train" / name / f"{i}{ext}", ext=".png" if ext == ".PnG" else ".jpg", seed=i)
        write_image(tmp_path / "val" / name / f"v{ext}", ext=".png" if ext == ".PnG" else ".jpg")
    (tmp_path / "train" / "a_cat" / "notes.txt").write_text("not an image")
    write_image(tmp_path / "train" / "a_cat" / "nested" / "deep.jpeg")
    return tmp_path


def test_scan_sorted_classes_case_insensitive_extensions(tree):
    train, val = scan_imagefolder(tree)
    assert train.classes == ("a_cat", "b_dog", "c_eel") and val.classes == train.classes
    assert len(train.paths) == 10 and train.labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert all(path.suffix.lower() != ".txt" for path in train.paths)
    assert [path.name for path in train.paths][:4] == ["0.jpg", "1.jpg", "2.jpg", "deep.jpeg"]
    assert val.labels.tolist() == [0, 1, 2]


def test_val_may_lack_classes_but_not_add_them(tree):
    import shutil

    shutil.rmtree(tree / "val" / "b_dog")
    assert scan_imagefolder(tree)[1].labels.tolist() == [0, 2]  # indices still from train
    write_image(tree / "val" / "zebra" / "z.JPEG")
    with pytest.raises(UserError, match="class folder.* zebra that the training split lacks"):
        scan_imagefolder(tree)


def test_empty_or_missing_splits(tmp_path):
    with pytest.raises(UserError, match="train is not a folder"):
        scan_imagefolder(tmp_path)
    (tmp_path / "train").mkdir()
    with pytest.raises(UserError, match="no class subfolders"):
        scan_split(tmp_path / "train")
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(UserError, match="holds no images"):
        scan_split(tmp_path / "train")


def test_undecodable_image_is_named_when_decoded(tree):
    from facenar.tasks.classification_data import FolderImages

    bad = tree / "train" / "b_dog" / "1.JPEG"
    bad.write_bytes(b"\xff\xd8 this is not really a jpeg")
    train, _ = scan_imagefolder(tree)  # scanning does not open files
    dataset = FolderImages(train, train=True, size=16, resize=20)
    with pytest.raises(UserError, match=r"1\.JPEG: cannot decode the image") as info:
        dataset[train.paths.index(bad)]
    assert "\n" not in str(info.value)
    assert dataset[0][0].shape == (3, 16, 16)


def test_jpeg_header_size_and_reduced_decode(tmp_path):
    path = write_image(tmp_path / "x.jpg", 375, 501)
    data = read_image_bytes(path)
    assert jpeg_size(data) == (375, 501)
    assert jpeg_size(read_image_bytes(write_image(tmp_path / "x.png", 10, 12, ".png"))) is None
    full = decode_image(data, path)
    assert full.shape == (375, 501, 3)
    for factor in (2, 4, 8):
        reduced = decode_image(data, path, factor)
        assert reduced.shape == (math.ceil(375 / factor), math.ceil(501 / factor), 3)
        reference = cv2.resize(full, reduced.shape[1::-1], interpolation=cv2.INTER_AREA)
        assert np.abs(reduced.astype(int) - reference).mean() < 4  # smooth image: close to decode + downscale
    rgb = decode_image(read_image_bytes(write_image(tmp_path / "red.png", 4, 4, ".png")), "red")
    assert rgb.shape == (4, 4, 3)


def test_reduction_never_upsamples():
    assert reduction(375, 256) == 1 and reduction(600, 256) == 2 and reduction(2000, 224) == 8
    assert reduction(100, 224) == 1 and reduction(512, 256) == 2 and reduction(511, 256) == 1


def test_random_resized_crop_bounds():
    from facenar.tasks.classification_data import random_resized_crop

    np.random.seed(0)
    for height, width in ((375, 500), (500, 375), (40, 60), (10, 1000)):
        for _ in range(200):
            top, left, h, w = random_resized_crop(height, width)
            assert 0 <= top and top + h <= height and 0 <= left and left + w <= width and h > 0 and w > 0
    top, left, h, w = random_resized_crop(10, 1000, scale=(0.9, 1.0))  # no try fits: centre crop at ratio 4/3
    assert (h, w) == (10, 13) and left == (1000 - 13) // 2


def test_imagenet_style_tensors(tree):
    from facenar.tasks.classification_data import IMAGENET_MEAN, IMAGENET_STD, FolderImages
    from facenar.data import SeededSamples

    train, val = scan_imagefolder(tree)
    samples = SeededSamples(FolderImages(train, train=True, size=32, resize=36), seed=3)
    batch = torch.stack([samples[i][0] for i in range(len(samples))])
    assert batch.shape == (10, 3, 32, 32)
    assert torch.equal(torch.stack([samples[i][0] for i in range(len(samples))]), batch)
    samples.epoch = 1
    assert not torch.equal(torch.stack([samples[i][0] for i in range(len(samples))]), batch)
    evaluation = FolderImages(val, train=False, size=32, resize=36)
    image, label = evaluation[1]
    assert image.shape == (3, 32, 32) and label == 1
    assert torch.equal(evaluation[1][0], image)  # evaluation is deterministic
    # resize the shorter side to 36 (40x60 -> 36x54), centre crop 32
    full = decode_image(read_image_bytes(val.paths[1]), "v")
    expected = cv2.resize(full, (54, 36), interpolation=cv2.INTER_AREA)[2:34, 11:43]
    expected = (torch.from_numpy(expected).permute(2, 0, 1) / 255 - torch.tensor(IMAGENET_MEAN)[:, None, None]) \
        / torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(image, expected)


def test_large_jpeg_is_decoded_reduced_and_matches_full_decode(tmp_path, monkeypatch):
    from facenar.tasks import classification_data
    from facenar.tasks.classification_data import IMAGENET_MEAN, IMAGENET_STD, FolderImages

    for split in ("train", "val"):
        write_image(tmp_path / split / "a" / "big.jpg", 600, 800)
    _, val = scan_imagefolder(tmp_path)
    factors = []
    monkeypatch.setattr(classification_data, "decode_image",
                        lambda data, where, factor=1: factors.append(factor) or decode_image(data, where, factor))
    image = FolderImages(val, train=False, size=224, resize=256)[0][0]
    assert factors == [2]  # 600 / 2 = 300 >= 256 pixels still cover the resize
    full = decode_image(read_image_bytes(val.paths[0]), "v")
    expected = cv2.resize(full, (341, 256), interpolation=cv2.INTER_AREA)[16:240, 58:282]
    expected = torch.from_numpy(expected).permute(2, 0, 1).float() / 255
    restored = image * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    assert (restored - expected).abs().mean() < 2 / 255


def test_demo_imagefolder(monkeypatch, capsys):
    from data_tools import imagefolder

    monkeypatch.setattr(imagefolder, "DEMO_DEFAULTS", {"train_per_class": 3, "val_per_class": 1, "seed": 0})
    root = ensure_demo_imagefolder()
    assert "generating" in capsys.readouterr().err
    assert ensure_demo_imagefolder() == root and capsys.readouterr().err == ""
    train, val = scan_imagefolder(root)
    assert len(train.classes) == 10 and len(train.paths) == 30 and len(val.paths) == 10
    assert {path.suffix for path in train.paths} == {".JPEG", ".jpg", ".jpeg"}
    shapes = {decode_image(read_image_bytes(path), path).shape for path in train.paths}
    assert len(shapes) > 5 and all(48 <= min(shape[:2]) and max(shape[:2]) <= 200 for shape in shapes)
