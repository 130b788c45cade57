"""RecordIO framing, headers, index handling and corrupt-file errors."""
from __future__ import annotations

import pickle
import random
import struct

import pytest

from facenar_runtime.errors import UserError
from data_tools.recordio import (MAGIC, MAGIC_BYTES, IRHeader, RecordReader, RecordWriter,
                                 encode_record, pack_record, unpack_record)


def write_records(tmp_path, payloads: dict[int, bytes], name="x"):
    rec, idx = tmp_path / f"{name}.rec", tmp_path / f"{name}.idx"
    with RecordWriter(rec, idx) as writer:
        for key, payload in payloads.items():
            writer.write(key, payload)
    return rec, idx


def frames(raw: bytes) -> list[tuple[int, int]]:
    """(cflag, length) of every frame in a raw .rec byte string."""
    out, offset = [], 0
    while offset < len(raw):
        magic, lrec = struct.unpack_from("<II", raw, offset)
        assert magic == MAGIC
        length = lrec & ((1 << 29) - 1)
        out.append((lrec >> 29, length))
        offset += 8 + (length + 3) // 4 * 4
    return out


def test_round_trip_and_layout(tmp_path):
    payloads = {k: bytes(range(k % 256)) * (k + 1) for k in range(10)}
    rec, idx = write_records(tmp_path, payloads)
    raw = rec.read_bytes()
    assert len(raw) % 4 == 0
    assert frames(raw) == [(0, len(p)) for p in payloads.values()]
    # Padding is zeros and .idx lines are mxnet's "key\toffset\n".
    first_len = len(payloads[0])
    assert raw[8 + first_len:8 + (first_len + 3) // 4 * 4] == bytes(-first_len % 4)
    lines = idx.read_text().splitlines()
    assert lines[0] == "0\t0" and len(lines) == 10
    reader = RecordReader(rec)
    assert reader.keys == list(range(10)) and len(reader) == 10
    assert all(reader.read(k) == p for k, p in payloads.items())
    assert list(reader) == list(payloads.values())


def test_magic_inside_payload_is_split_like_dmlc(tmp_path):
    aligned = b"abcd" + MAGIC_BYTES + b"efgh" + MAGIC_BYTES + MAGIC_BYTES + b"xyz"
    unaligned = b"ab" + MAGIC_BYTES + b"cd"
    at_start = MAGIC_BYTES + b"tail!"
    at_end = b"1234" + MAGIC_BYTES
    # Part lengths and flags as dmlc-core's RecordIOWriter emits them.
    assert frames(b"".join(encode_record(aligned))) == [(1, 4), (2, 4), (2, 0), (3, 3)]
    assert frames(b"".join(encode_record(unaligned))) == [(0, len(unaligned))]
    assert frames(b"".join(encode_record(at_start))) == [(1, 0), (3, 5)]
    assert frames(b"".join(encode_record(at_end))) == [(1, 4), (3, 0)]
    payloads = {0: aligned, 1: unaligned, 2: at_start, 3: at_end, 4: b""}
    rec, _ = write_records(tmp_path, payloads)
    reader = RecordReader(rec)
    assert [reader.read(k) for k in payloads] == list(payloads.values())
    assert list(reader) == list(payloads.values())


def test_idx_in_any_order_and_sparse_keys(tmp_path):
    payloads = {k * 7 + 3: f"record {k}".encode() for k in range(50)}
    rec, idx = write_records(tmp_path, payloads)
    lines = idx.read_text().splitlines()
    random.Random(0).shuffle(lines)
    idx.write_text("\n".join(lines) + "\n")
    reader = RecordReader(rec, idx)
    assert reader.keys == sorted(payloads)
    assert all(reader.read(k) == p for k, p in payloads.items())
    assert 10 in reader and 11 not in reader
    with pytest.raises(UserError, match="no record with key 11"):
        reader.read(11)


def test_missing_idx_is_rebuilt_from_the_rec(tmp_path, capsys):
    payloads = {100 + k: b"p" * k + MAGIC_BYTES * (k % 2) for k in range(6)}
    rec, idx = write_records(tmp_path, payloads)
    idx.unlink()
    reader = RecordReader(rec)
    err = capsys.readouterr().err
    assert "not found; indexing" in err and err.count("\n") == 1
    assert reader.keys == list(range(6))  # keys become record positions
    assert [reader.read(k) for k in range(6)] == list(payloads.values())


def test_reader_pickles_and_reopens(tmp_path):
    rec, _ = write_records(tmp_path, {0: b"zero", 1: b"one"})
    reader = RecordReader(rec)
    assert reader.read(1) == b"one"  # maps the file in this process
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._map is None and clone.read(0) == b"zero"
    reader.close()
    clone.close()


def test_header_pack_unpack_single_and_multi_label():
    single = pack_record(IRHeader(0, 3.0, 17, 5), b"jpeg")
    assert single[:24] == struct.pack("<IfQQ", 0, 3.0, 17, 5)
    assert unpack_record(single) == (IRHeader(0, 3.0, 17, 5), b"jpeg")
    multi = pack_record(IRHeader(0, (1.5, 2.0, -3.0), 9, 0), b"img")
    assert multi[:24] == struct.pack("<IfQQ", 3, 0.0, 9, 0)
    assert multi[24:36] == struct.pack("<3f", 1.5, 2.0, -3.0)
    assert unpack_record(multi) == (IRHeader(3, (1.5, 2.0, -3.0), 9, 0), b"img")
    with pytest.raises(UserError, match="announces 5 labels"):
        unpack_record(struct.pack("<IfQQ", 5, 0.0, 0, 0) + b"1234", "key 7")


def test_writer_is_atomic_on_error(tmp_path):
    rec, idx = tmp_path / "a.rec", tmp_path / "a.idx"
    with pytest.raises(RuntimeError):
        with RecordWriter(rec, idx) as writer:
            writer.write(0, b"data")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_truncated_rec(tmp_path):
    rec, _ = write_records(tmp_path, {0: b"a" * 40, 1: b"b" * 40})
    rec.write_bytes(rec.read_bytes()[:-10])
    reader = RecordReader(rec)
    assert reader.read(0) == b"a" * 40
    with pytest.raises(UserError, match=r"key 1 at byte 48: .*truncated"):
        reader.read(1)
    with pytest.raises(UserError, match="truncated"):
        list(reader)


def test_wrong_magic_at_an_offset(tmp_path):
    rec, idx = write_records(tmp_path, {0: b"a" * 40, 1: b"b" * 40})
    idx.write_text("0\t0\n1\t20\n")
    with pytest.raises(UserError, match=r"x\.rec: key 1 at byte 20: no RecordIO magic"):
        RecordReader(rec, idx).read(1)


def test_idx_offset_beyond_eof(tmp_path):
    rec, idx = write_records(tmp_path, {0: b"a" * 40})
    idx.write_text("0\t0\n5\t4096\n")
    with pytest.raises(UserError, match=r"x\.idx: key 5 points at byte 4096, beyond the end"):
        RecordReader(rec, idx)


def test_malformed_idx_and_missing_rec(tmp_path):
    rec, idx = write_records(tmp_path, {0: b"a"})
    idx.write_text("0\tzero\n")
    with pytest.raises(UserError, match="non-integer key or offset"):
        RecordReader(rec, idx)
    with pytest.raises(UserError, match="nothere.rec not found"):
        RecordReader(tmp_path / "nothere.rec")
