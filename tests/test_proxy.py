"""Proxy split: selection, verbatim copy, determinism, manifest, CLI errors."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from data_tools import proxy
from facenar_runtime.cli import run_cli
from data_tools.emore import EmoreDataset, write_emore, write_property
from data_tools.recordio import MAGIC_BYTES, RecordReader
from facenar import prepare_proxy

# 30 identities; ids with i % 3 == 0 have 4 images, the others 8 + i % 5.
COUNTS = [4 if i % 3 == 0 else 8 + i % 5 for i in range(30)]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    folder = tmp_path_factory.mktemp("proxy_source") / "emore"
    identities = [[f"id{i}-img{j}".encode() + MAGIC_BYTES * (j % 2) for j in range(n)]
                  for i, n in enumerate(COUNTS)]
    write_emore(folder, identities)
    write_property(folder, len(COUNTS), (112, 96))
    return folder


def cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(prepare_proxy.main, argv)
    return exit_info.value.code, capsys.readouterr()


def test_build_proxy_contents(source, tmp_path):
    out = tmp_path / "proxy"
    summary = proxy.build_proxy(source, out, num_ids=6, per_id=8, val_per_id=2, seed=0)
    assert summary["eligible_ids"] == 20 and summary["train_images"] == 36 and summary["val_images"] == 12
    assert sorted(p.name for p in out.iterdir()) == [".facenar", "manifest.csv", "property", "proxy.json",
                                                      "train.idx", "train.rec", "val.idx", "val.rec"]
    assert (out / "property").read_text() == "6,112,96"
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == proxy.MANIFEST_COLUMNS and len(manifest) == 48
    src = EmoreDataset(source)
    by_label = manifest.groupby("proxy_label")
    assert sorted(by_label.groups) == list(range(6))
    # Remap follows ascending source label; every chosen identity is eligible and keeps 6 + 2 images.
    firsts = by_label["source_label"].first().tolist()
    assert firsts == sorted(firsts) and all(COUNTS[label] >= 8 for label in firsts)
    assert (by_label["source_label"].nunique() == 1).all()
    assert manifest.groupby(["proxy_label", "split"]).size().tolist() == [6, 2] * 6
    assert manifest["source_key"].is_unique
    for split in ("train", "val"):
        rows = manifest[manifest["split"] == split]
        split_ds = EmoreDataset(out, prefix=split)
        assert split_ds.has_header and split_ds.num_images == len(rows)
        for row in rows.itertuples():
            assert split_ds.label_of(row.proxy_key) == row.proxy_label
            assert src.label_of(row.source_key) == row.source_label
            assert split_ds.read_image(row.proxy_key) == src.read_image(row.source_key)  # verbatim


def test_same_seed_same_bytes_other_seed_differs(source, tmp_path):
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        proxy.build_proxy(source, tmp_path / name, num_ids=5, per_id=8, val_per_id=2, seed=seed)
    for file in ("train.rec", "train.idx", "val.rec", "val.idx", "manifest.csv", "property", "proxy.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes(), file
    assert (tmp_path / "a" / "manifest.csv").read_bytes() != (tmp_path / "c" / "manifest.csv").read_bytes()
    assert (tmp_path / "a" / "train.rec").read_bytes() != (tmp_path / "c" / "train.rec").read_bytes()


def test_selection_reads_only_header_and_identity_records(source, monkeypatch):
    dataset = EmoreDataset(source)
    reads = []
    original = RecordReader.read
    monkeypatch.setattr(RecordReader, "read", lambda self, key: reads.append(key) or original(self, key))
    plan = proxy.select(dataset, 4, 8, 2, seed=0)
    assert reads == [] and len(plan) == 4
    reads.clear()
    EmoreDataset(source)
    images = sum(COUNTS)
    assert reads == [0, *range(images + 1, images + 1 + len(COUNTS))]


def test_cli_prints_summary(source, tmp_path, capsys):
    code, streams = cli(["--data", str(source), "--out", str(tmp_path / "p"), "--num-ids", "3",
                         "--per-id", "9", "--val-per-id", "3", "--seed", "1"], capsys)
    assert code == 0
    assert "3 of 16 identities with >= 9 images (of 30), 18 train / 9 val images" in streams.out
    assert json.loads((tmp_path / "p" / "proxy.json").read_text())["per_id"] == 9


def test_too_few_eligible_ids_exits_2(source, tmp_path, capsys):
    out = tmp_path / "p"
    code, streams = cli(["--data", str(source), "--out", str(out), "--num-ids", "25", "--per-id", "8"], capsys)
    assert code == 2
    assert "only 20 of 30 identities have at least 8 images, fewer than --num-ids 25" in streams.err
    assert "Traceback" not in streams.err
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_existing_output_needs_force_and_user_folders_are_never_replaced(source, tmp_path, capsys):
    out = tmp_path / "p"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    argv = ["--data", str(source), "--out", str(out), "--num-ids", "2", "--per-id", "8"]
    code, streams = cli(argv, capsys)
    assert code == 2 and "already exists; pass --force" in streams.err
    code, streams = cli([*argv, "--force"], capsys)
    assert code == 2 and "facenar did not write" in streams.err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert cli(argv, capsys)[0] == 2  # even an empty folder needs --force
    assert cli([*argv, "--force"], capsys)[0] == 0 and (out / "train.rec").is_file()
    assert cli([*argv, "--force", "--seed", "1"], capsys)[0] == 0  # a proxy folder (marked) is replaced
    assert [p.name for p in tmp_path.iterdir()] == ["p"]  # no temp siblings left


@pytest.mark.parametrize("argv, message", [
    (["--val-per-id", "8", "--per-id", "8"], "--val-per-id must be between 1 and --per-id - 1"),
    (["--num-ids", "0"], "argument --num-ids: must be >= 1, got 0"),
    (["--per-id", "-5"], "argument --per-id: must be >= 2, got -5"),
    (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["--per-id", "nan"], "argument --per-id: expected an integer, got 'nan'"),
])
def test_bad_options_exit_2(source, tmp_path, capsys, argv, message):
    code, streams = cli(["--data", str(source), "--out", str(tmp_path / "p"), *argv], capsys)
    assert code == 2 and message in streams.err


def test_out_must_not_be_the_source(source, capsys):
    code, streams = cli(["--data", str(source), "--out", str(source), "--force"], capsys)
    assert code == 2 and "would replace the input" in streams.err
    assert (source / "train.rec").is_file()


def test_ensure_demo_proxy_builds_once(source, monkeypatch, capsys):
    import data_tools.demo

    monkeypatch.setattr(data_tools.demo, "ensure_demo", lambda: source)
    monkeypatch.setattr(proxy, "DEMO_DEFAULTS", {"num_ids": 4, "per_id": 8, "val_per_id": 2, "seed": 0})
    folder = proxy.ensure_demo_proxy()
    assert "building the demo proxy split" in capsys.readouterr().err
    assert EmoreDataset(folder, prefix="val").num_images == 8
    stamp = (folder / "train.rec").stat().st_mtime_ns
    assert proxy.ensure_demo_proxy() == folder and capsys.readouterr().err == ""
    assert (folder / "train.rec").stat().st_mtime_ns == stamp


def test_cli_without_data_uses_demo_and_demo_defaults(source, tmp_path, monkeypatch, capsys):
    import data_tools.demo

    monkeypatch.setattr(data_tools.demo, "ensure_demo", lambda: source)
    monkeypatch.setattr(prepare_proxy, "DEMO_DEFAULTS", {"num_ids": 5, "per_id": 8, "val_per_id": 3, "seed": 0})
    monkeypatch.setattr(prepare_proxy, "demo_proxy_dir", lambda: tmp_path / "demo_proxy")
    code, streams = cli(["--num-ids", "4"], capsys)  # explicit flags still win over demo defaults
    assert code == 0 and "4 of 20 identities with >= 8 images (of 30), 20 train / 12 val images" in streams.out
    assert (tmp_path / "demo_proxy" / "property").read_text() == "4,112,96"
    code, streams = cli(["--data", str(source)], capsys)
    assert code == 2 and "--out is required with --data" in streams.err
