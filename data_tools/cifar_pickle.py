"""Write pickles the way the official CIFAR-10 files were written: python2 cPickle, protocol 2.

Python 3's pickler cannot: it spells `bytes` as `_codecs.encode(str, 'latin1')` and numpy 2
names `numpy._core.multiarray`. Python 2 wrote byte strings as (SHORT_)BINSTRING and numpy 1.x
named `numpy.core.multiarray._reconstruct`, which is what readers of the real files meet, so
the demo data and the reader tests use this small opcode writer for the handful of types CIFAR
files hold: dict, list, tuple, bytes, int, bool, None and C-ordered uint8 arrays.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

import numpy as np


class _Global(NamedTuple):
    module: str
    name: str


class _Reduce(NamedTuple):
    func: _Global
    args: tuple
    state: object


def _uint8_array(array: np.ndarray) -> _Reduce:
    """What numpy 1.x's ndarray.__reduce__ returned under python 2 (version-3 dtype state)."""
    if array.dtype != np.uint8:
        raise ValueError(f"only uint8 arrays are written, not {array.dtype}")
    dtype = _Reduce(_Global("numpy", "dtype"), (b"u1", 0, 1), (3, b"|", None, None, None, -1, -1, 0))
    return _Reduce(_Global("numpy.core.multiarray", "_reconstruct"), (_Global("numpy", "ndarray"), (0,), b"b"),
                   (1, tuple(int(n) for n in array.shape), dtype, False, np.ascontiguousarray(array).tobytes()))


class _Writer:
    def __init__(self):
        self.parts, self.memo = [b"\x80\x02"], 0

    def put(self) -> None:
        """cPickle memoises every container, string and global; readers ignore the indices."""
        self.memo += 1
        self.parts.append(b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo))

    def items(self, values, op: bytes) -> None:
        for start in range(0, len(values), 1000):  # cPickle writes containers in runs of 1000
            chunk = values[start:start + 1000]
            if len(chunk) > 1:
                self.parts.append(b"(")
            for value in chunk:
                for part in (value if op == b"u" else (value,)):
                    self.save(part)
            self.parts.append(op if len(chunk) > 1 else {b"u": b"s", b"e": b"a"}[op])

    def save(self, obj) -> None:
        if obj is None or isinstance(obj, bool):
            self.parts.append({None: b"N", True: b"\x88", False: b"\x89"}[obj])
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                self.parts.append(b"K" + bytes([obj]))
            elif 0 <= obj < 65536:
                self.parts.append(b"M" + struct.pack("<H", obj))
            else:
                self.parts.append(b"J" + struct.pack("<i", obj))
        elif isinstance(obj, bytes):
            head = b"U" + bytes([len(obj)]) if len(obj) < 256 else b"T" + struct.pack("<I", len(obj))
            self.parts += [head, obj]
            self.put()
        elif isinstance(obj, _Global):
            self.parts.append(f"c{obj.module}\n{obj.name}\n".encode())
            self.put()
        elif isinstance(obj, _Reduce):
            self.save(obj.func)
            self.save(obj.args)
            self.parts.append(b"R")
            self.put()
            self.save(obj.state)
            self.parts.append(b"b")
        elif isinstance(obj, np.ndarray):
            self.save(_uint8_array(obj))
        elif isinstance(obj, tuple):
            if len(obj) > 3:
                self.parts.append(b"(")
            for value in obj:
                self.save(value)
            self.parts.append(b")" if not obj else b"t" if len(obj) > 3 else b"\x85\x86\x87"[len(obj) - 1:len(obj)])
            if obj:
                self.put()
        elif isinstance(obj, list):
            self.parts.append(b"]")
            self.put()
            self.items(obj, b"e")
        elif isinstance(obj, dict):
            self.parts.append(b"}")
            self.put()
            self.items(list(obj.items()), b"u")
        else:
            raise TypeError(f"cannot write {type(obj).__name__} the python2 way")


def dumps_py2(obj) -> bytes:
    """`obj` pickled as python2's cPickle.dumps(obj, 2) would have (dict keys in the given order)."""
    writer = _Writer()
    writer.save(obj)
    return b"".join(writer.parts) + b"."
