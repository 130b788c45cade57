"""MXNet RecordIO (.rec + .idx), byte-exact, without mxnet.

Face datasets (insightface faces_emore, mxnet im2rec output) ship in this format; reading it
natively keeps mxnet (which pins numpy 1.x) out of the runtime. The framing follows dmlc-core's
RecordIOWriter/Reader: each record is `magic, lrec = cflag << 29 | length, payload, zero padding
to 4 bytes`; a payload that contains the magic at a 4-aligned offset is split there into parts
(cflag 1 first, 2 middle, 3 last) with the magic dropped, and the reader puts it back.
"""
from __future__ import annotations

import contextlib
import mmap
import os
import struct
import sys
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from facenar_runtime.atomic import atomic_path
from facenar_runtime.errors import UserError

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
MAX_LENGTH = (1 << 29) - 1
_FRAME = struct.Struct("<II")
_IR = struct.Struct("<IfQQ")
IR_SIZE = _IR.size  # 24


class IRHeader(NamedTuple):
    """mxnet's image-record header; `label` is a tuple when the record carries several labels."""

    flag: int
    label: float | tuple[float, ...]
    id: int
    id2: int


def pack_record(header: IRHeader, data: bytes) -> bytes:
    """IRHeader + extra labels + data, as mxnet.recordio.pack (a sequence label sets flag=len)."""
    label = header.label
    if isinstance(label, (int, float, np.number)):
        return _IR.pack(0, float(label), header.id, header.id2) + data
    labels = np.asarray(label, dtype="<f4").ravel()
    return _IR.pack(labels.size, 0.0, header.id, header.id2) + labels.tobytes() + data


def unpack_record(payload: bytes, where: str = "record") -> tuple[IRHeader, bytes]:
    """Split a payload into (IRHeader, data); flag > 0 means `flag` float32 labels follow."""
    if len(payload) < IR_SIZE:
        raise UserError(f"{where}: payload of {len(payload)} bytes is shorter than the "
                        f"{IR_SIZE}-byte image-record header; the record is not an image record")
    flag, label, rec_id, rec_id2 = _IR.unpack_from(payload)
    if flag == 0:
        return IRHeader(0, label, rec_id, rec_id2), payload[IR_SIZE:]
    end = IR_SIZE + 4 * flag
    if len(payload) < end:
        raise UserError(f"{where}: header announces {flag} labels but the payload has only "
                        f"{len(payload)} bytes; the record is corrupt")
    labels = struct.unpack_from(f"<{flag}f", payload, IR_SIZE)
    return IRHeader(flag, labels, rec_id, rec_id2), payload[end:]


def encode_record(payload: bytes) -> list[bytes]:
    """The framed bytes of one record, split at 4-aligned magics exactly like dmlc-core."""
    if len(payload) > MAX_LENGTH:
        raise UserError(f"a record of {len(payload)} bytes exceeds RecordIO's 2^29-byte limit")
    pieces: list[bytes] = []
    start = 0
    hit = payload.find(MAGIC_BYTES)
    while hit != -1:
        if hit % 4 == 0:
            pieces += [_FRAME.pack(MAGIC, (1 if start == 0 else 2) << 29 | (hit - start)),
                       payload[start:hit]]
            start = hit + 4
            hit = payload.find(MAGIC_BYTES, start)
        else:
            hit = payload.find(MAGIC_BYTES, hit + 1)
    cflag = 3 if start else 0
    pieces += [_FRAME.pack(MAGIC, cflag << 29 | (len(payload) - start)), payload[start:],
               bytes(-len(payload) % 4)]
    return pieces


def default_idx_path(rec_path: str | os.PathLike) -> Path:
    return Path(rec_path).with_suffix(".idx")


def _parse_idx(idx_path: Path, rec_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, offsets) from `key\\toffset` lines; vectorised because MS1M has 5.8M lines.

    A record takes at least 8 bytes of the .rec and its index line under 32, so an index far
    larger than its .rec is the wrong file and is refused before it is read into memory.
    """
    limit = 4 * rec_size + (1 << 20)
    if idx_path.stat().st_size > limit:
        raise UserError(f"{idx_path}: index of {idx_path.stat().st_size} bytes is far too large for "
                        f"{rec_size} bytes of records; wrong file? delete it to rebuild it from the .rec")
    text = idx_path.read_bytes()
    tokens = text.split()
    if len(tokens) % 2 or text.count(b"\t") != len(tokens) // 2:
        raise UserError(f"{idx_path}: malformed index (every line must be 'key<TAB>offset'); "
                        f"delete it to rebuild it from the .rec")
    try:
        pairs = np.array(tokens, dtype=np.int64).reshape(-1, 2)
    except (ValueError, OverflowError):
        raise UserError(f"{idx_path}: non-integer key or offset; delete it to rebuild it "
                        f"from the .rec") from None
    return pairs[:, 0].copy(), pairs[:, 1].copy()


class RecordReader:
    """Random access by key (via .idx) and sequential scans of a .rec, memory-mapped.

    The mmap is opened lazily in whichever process reads, so a pickled reader (DataLoader
    workers, process pools) maps the file itself instead of sharing a handle.
    """

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else default_idx_path(rec_path)
        if not self.rec_path.is_file():
            raise UserError(f"{self.rec_path} not found; pass the folder that holds the .rec file")
        self._size = self.rec_path.stat().st_size
        self._map: mmap.mmap | bytes | None = None
        self._pid: int | None = None
        if self.idx_path.is_file():
            keys, offsets = _parse_idx(self.idx_path, self._size)
        else:
            print(f"{self.idx_path} not found; indexing {self.rec_path} by scanning it "
                  f"(keys = record order 0, 1, 2, ...)", file=sys.stderr)
            offsets = np.fromiter((off for off, _ in self._spans()), dtype=np.int64)
            keys = np.arange(offsets.size, dtype=np.int64)
        self._check_offsets(keys, offsets)
        order = np.argsort(keys, kind="stable")
        self._keys, self._offsets = keys[order], offsets[order]
        dup = np.flatnonzero(self._keys[1:] == self._keys[:-1])
        if dup.size:
            raise UserError(f"{self.idx_path}: key {self._keys[dup[0]]} appears twice; "
                            f"delete the .idx to rebuild it from the .rec")

    def _check_offsets(self, keys: np.ndarray, offsets: np.ndarray) -> None:
        bad = np.flatnonzero((offsets < 0) | (offsets + _FRAME.size > self._size))
        if bad.size:
            i = bad[0]
            raise UserError(f"{self.idx_path}: key {keys[i]} points at byte {offsets[i]}, beyond "
                            f"the end of {self.rec_path} ({self._size} bytes); the .rec is "
                            f"truncated or the .idx belongs to another file (delete it to rebuild)")

    # -- process-local mapping -------------------------------------------------------------
    def _view(self) -> mmap.mmap | bytes:
        if self._map is None or self._pid != os.getpid():
            if self._size == 0:
                self._map = b""
            else:
                with open(self.rec_path, "rb") as handle:
                    self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            self._pid = os.getpid()
        return self._map

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_map"] = None
        state["_pid"] = None
        return state

    def close(self) -> None:
        if isinstance(self._map, mmap.mmap) and self._pid == os.getpid():
            self._map.close()
        self._map = None

    def __enter__(self) -> "RecordReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- framing ---------------------------------------------------------------------------
    def _parts(self, offset: int, what: str) -> tuple[list[tuple[int, int]], int]:
        """Byte ranges of the parts of the record at `offset`, and the next record's offset."""
        view = self._view()
        parts: list[tuple[int, int]] = []
        while True:
            if offset + _FRAME.size > self._size:
                raise UserError(f"{self.rec_path}: {what}: file ends at byte {self._size} inside "
                                f"a record header; the .rec is truncated (copy or create it again)")
            magic, lrec = _FRAME.unpack_from(view, offset)
            if magic != MAGIC:
                raise UserError(f"{self.rec_path}: {what}: no RecordIO magic at byte {offset}; "
                                f"the file is corrupt or its .idx belongs to another file "
                                f"(delete the .idx to rebuild it)")
            cflag, length = lrec >> 29, lrec & MAX_LENGTH
            start = offset + _FRAME.size
            if start + length > self._size:
                raise UserError(f"{self.rec_path}: {what}: record at byte {offset} needs {length} "
                                f"bytes but the file ends at byte {self._size}; the .rec is "
                                f"truncated (copy or create it again)")
            if (cflag in (2, 3)) != bool(parts):
                raise UserError(f"{self.rec_path}: {what}: record part at byte {offset} has "
                                f"continuation flag {cflag} out of sequence; the file is corrupt")
            parts.append((start, start + length))
            offset = start + ((length + 3) & ~3)
            if cflag in (0, 3):
                return parts, offset

    def _payload(self, parts: list[tuple[int, int]]) -> bytes:
        view = self._view()
        if len(parts) == 1:
            start, end = parts[0]
            return view[start:end]
        return MAGIC_BYTES.join(view[start:end] for start, end in parts)

    def _spans(self) -> Iterator[tuple[int, list[tuple[int, int]]]]:
        offset = 0
        while offset < self._size:
            parts, following = self._parts(offset, f"scanning record at byte {offset}")
            yield offset, parts
            offset = following

    # -- public API ------------------------------------------------------------------------
    @property
    def keys(self) -> list[int]:
        """All keys, ascending."""
        return self._keys.tolist()

    def key_array(self) -> np.ndarray:
        """All keys, ascending, as int64 (cheap at MS1M scale where a list is not)."""
        return self._keys

    def __len__(self) -> int:
        return int(self._keys.size)

    def __contains__(self, key: int) -> bool:
        i = np.searchsorted(self._keys, key)
        return bool(i < self._keys.size and self._keys[i] == key)

    def offset_of(self, key: int) -> int:
        i = int(np.searchsorted(self._keys, key))
        if i >= self._keys.size or self._keys[i] != key:
            raise UserError(f"{self.idx_path}: no record with key {key}")
        return int(self._offsets[i])

    def read(self, key: int) -> bytes:
        """The payload stored under `key` (multi-part records reassembled)."""
        offset = self.offset_of(key)
        parts, _ = self._parts(offset, f"key {key} at byte {offset}")
        return self._payload(parts)

    def __iter__(self) -> Iterator[bytes]:
        """Payloads in file order, ignoring the .idx."""
        for _, parts in self._spans():
            yield self._payload(parts)


class RecordWriter:
    """Write a .rec and its .idx; both appear only when the `with` block succeeds."""

    def __init__(self, rec_path: str | os.PathLike, idx_path: str | os.PathLike | None = None):
        self.rec_path = Path(rec_path)
        self.idx_path = Path(idx_path) if idx_path is not None else default_idx_path(rec_path)
        self._stack: contextlib.ExitStack | None = None
        self._offsets: dict[int, tuple[int, int]] = {}
        self._position = 0

    def __enter__(self) -> "RecordWriter":
        with contextlib.ExitStack() as stack:
            rec_tmp = stack.enter_context(atomic_path(self.rec_path))
            idx_tmp = stack.enter_context(atomic_path(self.idx_path))
            self._rec = stack.enter_context(open(rec_tmp, "wb"))
            self._idx = stack.enter_context(open(idx_tmp, "w", encoding="ascii", newline="\n"))
            self._stack = stack.pop_all()
        return self

    def write(self, key: int, payload: bytes) -> int:
        """Append one record under `key`; returns its byte offset."""
        if self._stack is None:
            raise RuntimeError("RecordWriter.write outside its `with` block")
        key = int(key)
        if key in self._offsets:
            raise ValueError(f"key {key} written twice to {self.rec_path}")
        offset = self._position
        pieces = encode_record(payload)
        for piece in pieces:
            self._rec.write(piece)
        size = sum(len(piece) for piece in pieces)
        self._position += size
        self._offsets[key] = (offset, size)
        self._idx.write(f"{key}\t{offset}\n")
        return offset

    def patch(self, key: int, payload: bytes) -> None:
        """Rewrite an already written record in place; its framed size must not change."""
        offset, size = self._offsets[int(key)]
        pieces = encode_record(payload)
        if sum(len(piece) for piece in pieces) != size:
            raise ValueError(f"patch of key {key} changes its framed size")
        self._rec.seek(offset)
        for piece in pieces:
            self._rec.write(piece)
        self._rec.seek(self._position)

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        if exc_type is None:
            for handle in (self._rec, self._idx):
                handle.flush()
                os.fsync(handle.fileno())
        return bool(stack.__exit__(exc_type, exc, tb))
