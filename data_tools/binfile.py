"""insightface verification `.bin` files: a pickle of (images, issame), read without trusting it.

A pickle can run arbitrary code on load, and `.bin` files are passed around the internet, so
`load_bin` uses an unpickler that resolves only the handful of numpy/builtin globals such files
really contain (checked against real insightface files) and refuses everything else before it
is called. Both image spellings in the wild are accepted: `bytes` (python2-era files, read with
encoding="bytes") and numpy uint8 arrays of encoded bytes (e.g. shape (N, 1)).
"""
from __future__ import annotations

import os
import pickle
from typing import Sequence

import numpy as np

from facenar_runtime.atomic import atomic_open
from facenar_runtime.errors import UserError
from facenar_runtime.safe_pickle import ForbiddenGlobal as _ForbiddenGlobal, restricted_loads
from facenar_runtime.textinput import read_bytes

# the public benchmark .bin files are tens of MB (lfw 6,000 pairs); 4 GiB leaves room for IJB-size
# sets yet refuses a wrong path (a link to /dev/zero, a disk image) before it fills memory
MAX_BIN_BYTES = 4 << 30


def _as_image_bytes(item, index: int, path) -> bytes:
    if isinstance(item, (bytes, bytearray)):
        return bytes(item)
    if isinstance(item, np.ndarray) and item.dtype in (np.uint8, np.int8):
        return item.tobytes()
    raise UserError(
        f"{path}: image {index} is a {type(item).__name__}"
        f"{'' if not isinstance(item, np.ndarray) else ' of ' + str(item.dtype)}, "
        "expected encoded image bytes (bytes or a uint8 array)"
    )


def _as_issame(flags, path) -> np.ndarray:
    try:
        values = np.asarray(flags)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{path}: issame list is not a flat list of booleans ({exc})") from None
    if values.ndim == 1 and values.size == 0:
        raise UserError(f"{path} has no pairs (an empty .bin); regenerate it with data_tools.make_bin")
    if values.ndim != 1 or values.dtype.kind not in "biu" or not np.isin(values, (0, 1)).all():
        raise UserError(f"{path}: issame list must be a flat list of booleans (0/1)")
    return values.astype(bool)


def load_bin(path: str | os.PathLike) -> tuple[list[bytes], np.ndarray]:
    """Read a verification .bin -> (2P encoded images, P issame flags); pair i = images 2i, 2i+1."""
    raw = read_bytes(path, "verification .bin", MAX_BIN_BYTES)
    try:
        payload = restricted_loads(raw)
    except _ForbiddenGlobal as exc:
        raise UserError(
            f"{path}: refusing to load, the pickle names the forbidden global {exc} "
            "(a .bin file only needs numpy arrays and bytes; it may be malicious)"
        ) from None
    except Exception as exc:  # any failure here is malformed data: no foreign code ran
        raise UserError(f"{path} is not a valid .bin pair file, truncated or not a pickle ({exc})") from None
    if not isinstance(payload, (tuple, list)) or len(payload) != 2:
        raise UserError(f"{path}: expected a pickled pair (images, issame), got {type(payload).__name__}")
    raw_images, raw_flags = payload
    if not isinstance(raw_images, (list, tuple, np.ndarray)):
        raise UserError(f"{path}: images must be a list, got {type(raw_images).__name__}")
    images = [_as_image_bytes(item, i, path) for i, item in enumerate(raw_images)]
    issame = _as_issame(raw_flags, path)
    if len(images) % 2:
        raise UserError(f"{path}: odd number of images ({len(images)}); pairs need 2 images each")
    if len(images) != 2 * len(issame):
        raise UserError(
            f"{path}: {len(images)} images but {len(issame)} issame flags (need exactly 2 images per flag)"
        )
    return images, issame


def save_bin(path: str | os.PathLike, images: Sequence[bytes], issame: Sequence[bool]) -> None:
    """Write (images, issame) as insightface does, atomically; readable by their load_bin too."""
    images = [bytes(image) for image in images]
    flags = [bool(flag) for flag in issame]
    if len(images) != 2 * len(flags):
        raise UserError(f"{path}: {len(images)} images for {len(flags)} pairs (need 2 per pair)")
    with atomic_open(path, "wb") as handle:
        pickle.dump((images, flags), handle, protocol=4)
