"""emore layout: header + identity records, the im2rec fallback, and the property file."""
from __future__ import annotations

import pytest

from facenar_runtime.errors import UserError
from data_tools.emore import EmoreDataset, read_property, write_emore, write_property
from data_tools.recordio import MAGIC_BYTES, IRHeader, RecordReader, RecordWriter, pack_record, unpack_record

IDENTITIES = [[b"a0", b"a1", b"a2"], [], [b"c0" + MAGIC_BYTES * 2], [b"d0", b"d1"]]


@pytest.fixture()
def emore(tmp_path):
    folder = tmp_path / "emore"
    assert write_emore(folder, iter(IDENTITIES)) == (6, 4)
    write_property(folder, 4)
    return folder


def test_write_emore_byte_layout(emore):
    reader = RecordReader(emore / "train.rec")
    assert reader.keys == list(range(11))  # header, 6 images, 4 identity records
    assert [int(line.split("\t")[0]) for line in (emore / "train.idx").read_text().splitlines()] == list(range(11))
    head, data = unpack_record(reader.read(0))
    assert head == IRHeader(2, (7.0, 11.0), 0, 0) and data == b""
    ranges = [unpack_record(reader.read(k))[0].label for k in range(7, 11)]
    assert ranges == [(1.0, 4.0), (4.0, 4.0), (4.0, 5.0), (5.0, 7.0)]
    assert unpack_record(reader.read(4)) == (IRHeader(0, 2.0, 4, 0), b"c0" + MAGIC_BYTES * 2)
    assert (emore / "property").read_text() == "4,112,112"


def test_emore_dataset_header_layout(emore):
    ds = EmoreDataset(emore)
    assert ds.has_header and ds.num_classes == 4 and ds.image_size == (112, 112)
    assert ds.num_images == 6 and ds.labels == [0, 2, 3]
    assert ds.keys_of(0) == [1, 2, 3] and ds.keys_of(1) == [] and ds.keys_of(3) == [5, 6]
    assert [ds.label_of(k) for k in range(1, 7)] == [0, 0, 0, 2, 3, 3]
    assert ds.image_labels().tolist() == [0, 0, 0, 2, 3, 3]
    assert ds.counts() == {0: 3, 2: 1, 3: 2}
    assert [ds.read_image(k) for k in ds.image_keys] == [img for ident in IDENTITIES for img in ident]
    with pytest.raises(UserError, match="key 8 is not an image"):
        ds.label_of(8)


def test_emore_dataset_im2rec_layout(tmp_path):
    """Without a header record, every key is an image labelled by its own header."""
    folder = tmp_path / "im2rec"
    folder.mkdir()
    records = {0: (5.0, b"x0"), 3: ((7.0, 0.25), b"x3"), 4: (5.0, b"x4"), 9: (2.0, b"x9")}
    with RecordWriter(folder / "train.rec") as writer:
        for key, (label, data) in records.items():
            writer.write(key, pack_record(IRHeader(0, label, key, 0), data))
    write_property(folder, 8, (96, 80))
    ds = EmoreDataset(folder)
    assert not ds.has_header and ds.image_size == (96, 80)
    assert ds.num_images == 4 and ds.labels == [2, 5, 7]
    assert ds.keys_of(5) == [0, 4] and ds.keys_of(7) == [3] and ds.keys_of(6) == []
    assert ds.label_of(3) == 7 and ds.read_image(9) == b"x9"
    assert ds.image_labels().tolist() == [5, 7, 5, 2]


@pytest.mark.parametrize("text", ["", "85742,112", "a,112,112", "10,112,-1", "1,2,3,4"])
def test_malformed_property(tmp_path, text):
    (tmp_path / "property").write_text(text)
    with pytest.raises(UserError, match="property: expected 'num_classes,height,width'"):
        read_property(tmp_path)


def test_missing_property(emore):
    (emore / "property").unlink()
    with pytest.raises(UserError, match="property not found"):
        EmoreDataset(emore)


def test_identity_range_outside_images(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    with RecordWriter(folder / "train.rec") as writer:
        writer.write(0, pack_record(IRHeader(2, (2.0, 3.0), 0, 0), b""))
        writer.write(1, pack_record(IRHeader(0, 0.0, 1, 0), b"img"))
        writer.write(2, pack_record(IRHeader(2, (1.0, 9.0), 2, 0), b""))
    write_property(folder, 1)
    with pytest.raises(UserError, match=r"identity record 2 has image range \[1, 9\)"):
        EmoreDataset(folder)
