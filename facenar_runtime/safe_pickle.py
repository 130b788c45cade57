"""Unpickling files from the internet without running their code.

A pickle names globals (module.name) that the loader imports and calls; a hostile file can name
`os.system`. The restricted unpickler resolves only an allow-list of data constructors and
refuses every other global before anything is imported or called. The numpy allow-list covers
what numpy writes for arrays, dtypes and scalars under every protocol, in both module spellings
(numpy 1.x and python2-era files say `numpy.core`, numpy 2 says `numpy._core`).
"""
from __future__ import annotations

import codecs
import io
import pickle
from typing import Mapping

import numpy as np
import numpy._core.multiarray as _multiarray
import numpy._core.numeric as _numeric


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Stand-in for `_codecs.encode`: python3 protocol-2 pickles spell `bytes` as encode(str, 'latin1')."""
    if codecs.lookup(encoding).name not in ("iso8859-1", "utf-8"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, encoding, errors)


def _empty_bytes(*args) -> bytes:
    """Stand-in for `bytes`: python3 protocol-2 pickles write b"" as bytes(); any argument
    (bytes(10**12) would allocate a terabyte) is refused."""
    if args:
        raise pickle.UnpicklingError("bytes() with arguments is not allowed")
    return b""


# (module, name) -> object: numpy arrays/dtypes/scalars, and bytes/bytearray as protocols 2-4 write them
NUMPY_ARRAYS: Mapping[tuple[str, str], object] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("builtins", "bytes"): _empty_bytes,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytearray"): bytearray,
    ("__builtin__", "bytearray"): bytearray,
    **{(f"{module}.multiarray", "_reconstruct"): _multiarray._reconstruct for module in ("numpy.core", "numpy._core")},
    **{(f"{module}.multiarray", "scalar"): _multiarray.scalar for module in ("numpy.core", "numpy._core")},
    **{(f"{module}.numeric", "_frombuffer"): _numeric._frombuffer for module in ("numpy.core", "numpy._core")},
}


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle names a global outside the allow-list; str() is `module.name`."""


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, allowed: Mapping[tuple[str, str], object], **kwargs):
        super().__init__(file, **kwargs)
        self.allowed = allowed

    def find_class(self, module: str, name: str):
        found = self.allowed.get((module, name))
        if found is None:
            raise ForbiddenGlobal(f"{module}.{name}")
        return found


def restricted_loads(raw: bytes, allowed: Mapping[tuple[str, str], object] = NUMPY_ARRAYS):
    """Unpickle `raw` resolving only `allowed` globals; python2 strings come back as bytes.

    Raises ForbiddenGlobal for a foreign global (nothing of it ran) and other exceptions
    (UnpicklingError, EOFError, ValueError, ...) for malformed data.
    """
    return RestrictedUnpickler(io.BytesIO(raw), allowed, encoding="bytes").load()
