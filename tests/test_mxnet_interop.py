"""RecordIO interop with the real mxnet 1.9.1 (peer venv): each side reads the other's files,
and both writers produce the same bytes for the same records."""
from __future__ import annotations

import json

import numpy as np
import pytest

from data_tools.emore import EmoreDataset, write_property
from data_tools.recordio import MAGIC_BYTES, IRHeader, RecordReader, RecordWriter, pack_record, unpack_record
from facenar.data import decode_image
from tests.jpeg_data import jpeg
from tests.peers import run_peer

pytestmark = pytest.mark.peer


def png_bytes() -> bytes:
    import cv2

    image = np.arange(8 * 8 * 3, dtype=np.uint8).reshape(8, 8, 3)
    return cv2.imencode(".png", image)[1].tobytes()


# (key, flag-free header, data), written in this (non-ascending) key order.
RECORDS = [
    (3, IRHeader(0, (1.5, -2.0, 7.0), 33, 1), jpeg(1, (24, 24))),
    (0, IRHeader(0, (11.0, 14.0), 0, 0), b""),                                    # emore header style
    (7, IRHeader(0, 4.0, 70, 0), b"abcd" + MAGIC_BYTES + b"xy" + MAGIC_BYTES + b"z"),  # aligned + unaligned magic
    (1, IRHeader(0, 2.0, 10, 5), png_bytes()),
    (2, IRHeader(0, 9.0, 20, 0), MAGIC_BYTES * 3),
    (12, IRHeader(0, 0.0, 0, 0), b""),
]

READ_SCRIPT = r"""
import json, sys
import mxnet as mx
rec = mx.recordio.MXIndexedRecordIO(sys.argv[2], sys.argv[1], "r")
out = {}
for key in rec.keys:
    header, data = mx.recordio.unpack(rec.read_idx(key))
    label = header.label
    label = [float(v) for v in label] if header.flag > 0 else float(label)
    item = {"flag": int(header.flag), "label": label, "id": int(header.id), "id2": int(header.id2), "data": data.hex()}
    if data[:3] == b"\xff\xd8\xff" or data[:4] == b"\x89PNG":
        item["pixels"] = mx.image.imdecode(data).asnumpy().astype("int64").ravel().tolist()
    out[str(key)] = item
print(json.dumps(out))
"""

WRITE_SCRIPT = r"""
import json, sys
import mxnet as mx
records = json.load(open(sys.argv[3]))
rec = mx.recordio.MXIndexedRecordIO(sys.argv[2], sys.argv[1], "w")
for key, flag, label, rid, rid2, data in records:
    rec.write_idx(key, mx.recordio.pack(mx.recordio.IRHeader(flag, label, rid, rid2), bytes.fromhex(data)))
rec.close()
"""


def _write_ours(folder):
    with RecordWriter(folder / "ours.rec", folder / "ours.idx") as writer:
        for key, header, data in RECORDS:
            writer.write(key, pack_record(header, data))


def test_mxnet_reads_our_records(tmp_path):
    _write_ours(tmp_path)
    seen = json.loads(run_peer("mxnet", READ_SCRIPT, str(tmp_path / "ours.rec"), str(tmp_path / "ours.idx")))
    assert sorted(map(int, seen)) == sorted(key for key, _, _ in RECORDS)
    for key, header, data in RECORDS:
        item = seen[str(key)]
        labels = header.label if isinstance(header.label, tuple) else None
        assert item["flag"] == (len(labels) if labels else 0)
        assert item["label"] == (list(labels) if labels else header.label)
        assert (item["id"], item["id2"]) == (header.id, header.id2)
        assert bytes.fromhex(item["data"]) == data
        if "pixels" in item:  # mxnet decodes to RGB like decode_image; PNG exactly, JPEG within rounding
            ours = decode_image(data).astype(np.int64).ravel()
            diff = np.abs(ours - np.array(item["pixels"]))
            assert diff.max() <= (0 if data.startswith(b"\x89PNG") else 2)


def test_we_read_mxnet_records_and_write_the_same_bytes(tmp_path):
    spec = [[key, 0, list(h.label) if isinstance(h.label, tuple) else h.label, h.id, h.id2, data.hex()]
            for key, h, data in RECORDS]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_peer("mxnet", WRITE_SCRIPT, str(tmp_path / "mx.rec"), str(tmp_path / "mx.idx"), str(tmp_path / "spec.json"))
    reader = RecordReader(tmp_path / "mx.rec", tmp_path / "mx.idx")
    assert reader.keys == sorted(key for key, _, _ in RECORDS)
    for key, header, data in RECORDS:
        got_header, got_data = unpack_record(reader.read(key))
        assert got_data == data
        assert got_header.label == header.label
        assert (got_header.id, got_header.id2) == (header.id, header.id2)
    assert [unpack_record(p)[1] for p in reader] == [data for _, _, data in RECORDS]
    _write_ours(tmp_path)
    assert (tmp_path / "ours.rec").read_bytes() == (tmp_path / "mx.rec").read_bytes()
    assert (tmp_path / "ours.idx").read_bytes() == (tmp_path / "mx.idx").read_bytes()


def test_mxnet_written_emore_layout_opens_as_dataset(tmp_path):
    """An insightface-style emore file written by mxnet: header, identity ranges, images."""
    images = [jpeg(i, (16, 16)) for i in range(3)]
    spec = [[0, 0, [4.0, 6.0], 0, 0, ""]]
    spec += [[k + 1, 0, float(label), k + 1, 0, images[k].hex()] for k, label in enumerate([0, 0, 1])]
    spec += [[4, 0, [1.0, 3.0], 0, 0, ""], [5, 0, [3.0, 4.0], 0, 0, ""]]
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_peer("mxnet", WRITE_SCRIPT, str(tmp_path / "train.rec"), str(tmp_path / "train.idx"), str(tmp_path / "spec.json"))
    write_property(tmp_path, 2, (16, 16))
    ds = EmoreDataset(tmp_path)
    assert ds.has_header and ds.num_images == 3 and ds.keys_of(0) == [1, 2] and ds.keys_of(1) == [3]
    assert [ds.read_image(k) for k in (1, 2, 3)] == images
