"""img2rec / rec2img: folder-per-identity <-> emore layout, bytes verbatim both ways."""
from __future__ import annotations

import pytest

from data_tools import img2rec, rec2img
from facenar_runtime.cli import run_cli
from data_tools.emore import EmoreDataset
from tests.jpeg_data import jpeg


@pytest.fixture()
def image_tree(tmp_path):
    root = tmp_path / "images"
    files = {"bob": ["b2.jpg", "b1.JPG"], "alice": ["a1.jpg", "a2.jpg", "a3.jpg"], "carol": ["c1.jpg"]}
    for i, (name, names) in enumerate(files.items()):
        (root / name).mkdir(parents=True)
        for j, file in enumerate(names):
            (root / name / file).write_bytes(jpeg(10 * i + j, (96, 80)))
    (root / "bob" / "notes.txt").write_text("not an image")
    (root / "empty").mkdir()
    return root


def exit_code(main, argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(main, argv)
    return info.value.code, capsys.readouterr()


def test_img2rec_layout_and_round_trip(image_tree, tmp_path, capsys):
    code, streams = exit_code(img2rec.main, ["--images", str(image_tree), "--out", str(tmp_path / "rec")], capsys)
    assert code == 0 and "wrote 6 images of 3 identities (96x80)" in streams.out
    ds = EmoreDataset(tmp_path / "rec")
    assert ds.num_classes == 3 and ds.image_size == (96, 80) and ds.labels == [0, 1, 2]
    # Labels follow sorted folder names, images sorted file names, bytes verbatim.
    expected = [image_tree / "alice" / f for f in ("a1.jpg", "a2.jpg", "a3.jpg")]
    expected += [image_tree / "bob" / f for f in ("b1.JPG", "b2.jpg")] + [image_tree / "carol" / "c1.jpg"]
    assert [ds.read_image(k) for k in ds.image_keys] == [p.read_bytes() for p in expected]
    assert ds.keys_of(1) == [4, 5]

    code, _ = exit_code(rec2img.main, ["--data", str(tmp_path / "rec"), "--out", str(tmp_path / "dump")], capsys)
    assert code == 0
    assert sorted(str(p.relative_to(tmp_path / "dump")) for p in (tmp_path / "dump").rglob("*.jpg")) == \
        ["0/1.jpg", "0/2.jpg", "0/3.jpg", "1/4.jpg", "1/5.jpg", "2/6.jpg"]
    assert (tmp_path / "dump" / "1" / "5.jpg").read_bytes() == (image_tree / "bob" / "b2.jpg").read_bytes()
    # Packing the dump again reproduces the dataset byte for byte.
    img2rec.images_to_rec(tmp_path / "dump", tmp_path / "again")
    for name in ("train.rec", "train.idx", "property"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "rec" / name).read_bytes()


def test_img2rec_errors(image_tree, tmp_path, capsys):
    out = tmp_path / "rec"
    out.mkdir()
    code, streams = exit_code(img2rec.main, ["--images", str(image_tree), "--out", str(out)], capsys)
    assert code == 2 and "already exists; pass --force" in streams.err and not any(out.iterdir())
    code, streams = exit_code(img2rec.main, ["--images", str(tmp_path / "none"), "--out", str(out)], capsys)
    assert code == 2 and "is not a folder" in streams.err
    code, streams = exit_code(img2rec.main, ["--images", str(image_tree / "empty"), "--out", str(out), "--force"], capsys)
    assert code == 2 and "no identity folders with images" in streams.err
    (image_tree / "alice" / "a1.jpg").write_bytes(b"broken")
    code, streams = exit_code(img2rec.main, ["--images", str(image_tree), "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "a1.jpg: cannot decode" in streams.err and not (tmp_path / "x").exists()


def test_image_suffix_sniffing():
    assert rec2img.image_suffix(jpeg(0)) == ".jpg"
    assert rec2img.image_suffix(b"\x89PNG\r\n\x1a\n....") == ".png"
    assert rec2img.image_suffix(b"RIFF\0\0\0\0WEBPVP8 ") == ".webp"
    assert rec2img.image_suffix(b"??") == ".bin"
