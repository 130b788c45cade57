"""Synthetic demo data: emore layout, held-out LFW-style benches, determinism, first-use build."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from data_tools import demo
from data_tools.binfile import load_bin
from facenar_runtime.cli import run_cli
from data_tools.emore import EmoreDataset
from data_tools.make_demo import main

BENCHES = ("lfw", "cfp_fp", "agedb_30")


def decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def test_tiny_demo_is_an_emore_dataset(tiny_demo):
    ds = EmoreDataset(tiny_demo)
    assert ds.has_header and ds.num_classes == 24 and ds.image_size == (112, 112)
    assert ds.num_images == 24 * 12 and ds.labels == list(range(24))
    assert all(len(ds.keys_of(label)) == 12 for label in ds.labels)
    assert decode(ds.read_image(ds.keys_of(5)[3])).shape == (112, 112, 3)
    assert ds.read_image(1) == demo.identity_images(0, "train", 0, 1)[0]
    assert "SYNTHETIC" in (tiny_demo / "README.txt").read_text()
    marker = json.loads((tiny_demo / demo.MARKER).read_text())
    assert marker["synthetic"] and marker["generator_version"] == demo.GENERATOR_VERSION


@pytest.mark.parametrize("bench", BENCHES)
def test_bench_pairs_folds_and_held_out_identities(tiny_demo, bench):
    images, issame = load_bin(tiny_demo / f"{bench}.bin")
    assert len(issame) == 40 and issame.sum() == 20
    # 10 folds like LFW's pairs.txt: each fold = its positives, then its negatives
    assert issame.tolist() == ([True] * 2 + [False] * 2) * 10
    plan, num_ids = demo.bench_plan(20, 0, bench)
    pools = [demo.identity_images(0, bench, i, demo.IMAGES_PER_BENCH_ID) for i in range(num_ids)]
    assert images == [pools[i][k] for pair in plan for i, k in pair[:2]]  # drawn from the bench's own ids
    assert all((a[0] == b[0]) == same for a, b, same in plan)
    folds_of: dict[int, set] = {}
    for index, (a, b, _) in enumerate(plan):
        for identity in (a[0], b[0]):
            folds_of.setdefault(identity, set()).add(index // 4)
    assert all(len(folds) == 1 for folds in folds_of.values())  # identity-disjoint folds, like LFW
    train = set(EmoreDataset(tiny_demo).read_image(k) for k in range(1, 24 * 12 + 1))
    assert train.isdisjoint(images)
    assert {decode(image).shape for image in images[:8]} == {(112, 112, 3)}


def test_same_seed_same_bytes_any_worker_count(tmp_path):
    kwargs = dict(num_ids=4, images_per_id=3, pairs_per_bench=10)
    demo.make_demo(tmp_path / "a", seed=3, workers=1, **kwargs)
    demo.make_demo(tmp_path / "b", seed=3, workers=2, **kwargs)
    demo.make_demo(tmp_path / "c", seed=4, workers=1, **kwargs)
    for name in ("train.rec", "train.idx", "property", "lfw.bin", "cfp_fp.bin", "agedb_30.bin"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "train.rec").read_bytes() != (tmp_path / "c" / "train.rec").read_bytes()


def test_identities_are_learnable_but_not_trivial():
    """Nearest class centre on 16x16 pixels: far above chance, far below perfect."""
    num_ids, per_id = 30, 8

    def feature(data):
        small = cv2.resize(decode(data), (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel()
        small -= small.mean()
        return small / np.linalg.norm(small)

    feats = np.array([[feature(b) for b in demo.identity_images(0, "train", i, per_id)] for i in range(num_ids)])
    centres = feats[:, : per_id // 2].mean(axis=1)
    queries = feats[:, per_id // 2:].reshape(-1, feats.shape[-1])
    accuracy = (np.argmax(queries @ centres.T, axis=1) == np.repeat(np.arange(num_ids), per_id // 2)).mean()
    print(f"nearest-centre accuracy over {num_ids} ids: {accuracy:.3f}")
    assert 5 / num_ids < accuracy < 0.9, accuracy


def test_pose_and_drift_emphasis_differ_per_bench():
    assert demo.BENCHES["cfp_fp"].yaw[0] > demo.BENCHES["lfw"].yaw[1]
    assert demo.BENCHES["agedb_30"].drift > demo.BENCHES["lfw"].drift and demo.BENCHES["agedb_30"].ageing > 0
    first = {bench: demo.identity_images(0, bench, 0, 1)[0] for bench in BENCHES}
    assert len(set(first.values())) == 3


def test_failed_build_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(demo.emore, "write_property", broken)
    with pytest.raises(RuntimeError):
        demo.make_demo(tmp_path / "out", num_ids=2, images_per_id=2, pairs_per_bench=10)
    assert list(tmp_path.iterdir()) == []


def test_ensure_demo_builds_once_and_rebuilds_on_new_generator(monkeypatch, capsys):
    monkeypatch.setattr(demo, "DEFAULTS", {"num_ids": 3, "images_per_id": 2, "pairs_per_bench": 10, "seed": 0})
    folder = demo.ensure_demo()
    assert folder == demo.demo_data_dir() and EmoreDataset(folder).num_classes == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "synthetic demo dataset" in err
    stamp = (folder / "train.rec").stat().st_mtime_ns
    assert demo.ensure_demo() == folder and capsys.readouterr().err == ""
    assert (folder / "train.rec").stat().st_mtime_ns == stamp
    monkeypatch.setattr(demo, "GENERATOR_VERSION", demo.GENERATOR_VERSION + 1)
    demo.ensure_demo()
    assert "generating" in capsys.readouterr().err
    assert json.loads((folder / demo.MARKER).read_text())["generator_version"] == demo.GENERATOR_VERSION


def test_cli_builds_then_refuses_overwrite(tmp_path, capsys):
    args = ["--out", str(tmp_path / "d"), "--num-ids", "3", "--images-per-id", "2", "--pairs", "10"]
    main(args)
    assert "wrote synthetic demo data" in capsys.readouterr().out
    for bad, message in ((args, "error: "), (args[:2] + ["--num-ids", "1", "--force"], "argument --num-ids: must be >= 2"),
                         (args[:2] + ["--seed", "-1"], "argument --seed: must be >= 0")):
        with pytest.raises(SystemExit) as info:
            run_cli(main, bad)
        err = capsys.readouterr().err
        assert info.value.code == 2 and message in err and err.splitlines()[-1].count("error:") == 1
