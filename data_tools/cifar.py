"""CIFAR-10 as users download it: `cifar-10-python.tar.gz` or its `cifar-10-batches-py/` folder.

The batches are python2 pickles (byte-string keys; b'data' a uint8 [N, 3072] array of row-major
R, G, B planes, b'labels' a list of ints); they are read with the restricted unpickler, so a
file naming any other global is refused without running it. The tarball is read member by
member in one pass, nothing is extracted to disk. The test batch is for final evaluation only:
searches hold out part of the training batches instead (`holdout_split`).
"""
from __future__ import annotations

import os
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data_tools.cli import UserError
from data_tools.safe_pickle import ForbiddenGlobal, restricted_loads
from data_tools.textinput import read_bytes

FOLDER = "cifar-10-batches-py"
TARBALL = "cifar-10-python.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
NUM_CLASSES = 10
SIDE = 32
SEARCH_HOLDOUT = 5000  # training images the search keeps aside as its validation split
# a batch of 10,000 images is 31 MB; 8x that admits re-packed batches, and refuses a bomb (a tar
# member declaring gigabytes, a link to /dev/zero) before anything is read or inflated
MAX_BATCH_BYTES = 256 << 20


@dataclass(frozen=True)
class CifarSplit:
    images: np.ndarray   # [N, 32, 32, 3] uint8 RGB
    labels: np.ndarray   # [N] int64 in 0..9
    classes: tuple[str, ...]


def load_cifar10(source: str | os.PathLike, split: str = "train") -> CifarSplit:
    """The `train` (data_batch_1..5) or `test` (test_batch) split of a tarball or batch folder."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    names = (*TRAIN_BATCHES, META) if split == "train" else (TEST_BATCH, META)
    raw, where = _read_members(_locate(Path(source)), names)
    classes = _class_names(raw[META], where(META))
    batches = [_batch(raw[name], where(name), len(classes)) for name in names[:-1]]
    return CifarSplit(np.concatenate([images for images, _ in batches]),
                      np.concatenate([labels for _, labels in batches]), classes)


def holdout_split(count: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) of `count` images, `holdout` of them drawn by `seed`; both sorted."""
    if not 0 < holdout < count:
        raise UserError(f"cannot hold out {holdout} of {count} training images; choose 1..{count - 1}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[holdout:]), np.sort(order[:holdout])


def default_holdout(count: int) -> int:
    """5,000 of the official 50,000 (as the paper's search); a tenth of a smaller set."""
    return min(SEARCH_HOLDOUT, count // 10)


def _locate(path: Path) -> Path:
    """The tarball or batch folder that `path` names, or a folder holding one of them."""
    if path.is_file():
        return path
    if (path / META).exists() or any((path / name).exists() for name in TRAIN_BATCHES):
        return path
    for candidate in (path / FOLDER, path / TARBALL):
        if candidate.exists():
            return candidate
    raise UserError(f"{path} is neither {TARBALL} nor a {FOLDER}/ folder (data_batch_1..5, test_batch, "
                    f"batches.meta); download the python version from https://www.cs.toronto.edu/~kriz/cifar.html")


def _read_members(path: Path, names: tuple[str, ...]):
    """{name: raw bytes} for the wanted batch files, and a function naming where each came from."""
    if path.is_dir():
        found = {}
        for name in names:
            if not os.path.exists(path / name):
                raise UserError(f"{path / name} is missing; the {FOLDER} folder is incomplete")
            found[name] = read_bytes(path / name, "CIFAR batch", MAX_BATCH_BYTES)
        return found, lambda name: str(path / name)
    found = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:  # one pass: seeking back in a gzip stream means decompressing again
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in names and name not in found:
                    if member.size > MAX_BATCH_BYTES:  # the header's size bounds what extractfile reads
                        raise UserError(f"{path}:{member.name} would inflate to {member.size / 2**20:.0f} MiB, more "
                                        f"than a CIFAR batch can hold ({MAX_BATCH_BYTES >> 20} MiB); not reading it")
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise UserError(f"{path} is truncated or not a CIFAR tar.gz ({exc}); download it again") from None
    missing = [name for name in names if name not in found]
    if missing:
        raise UserError(f"{path} has no {', '.join(missing)}; is it the CIFAR-10 python version ({TARBALL})?")
    return found, lambda name: f"{path}:{FOLDER}/{name}"


def _unpickle_dict(raw: bytes, where: str) -> dict[str, object]:
    try:
        payload = restricted_loads(raw)
    except ForbiddenGlobal as exc:
        raise UserError(f"{where}: refusing to load, the pickle names the forbidden global {exc} "
                        "(CIFAR batches only need numpy arrays and lists; it may be malicious)") from None
    except Exception as exc:  # malformed data; no foreign code ran
        raise UserError(f"{where} is not a CIFAR batch pickle, truncated or corrupt ({exc})") from None
    if not isinstance(payload, dict):
        raise UserError(f"{where}: expected a pickled dict, got {type(payload).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else str(key): value for key, value in payload.items()}


def _class_names(raw: bytes, where: str) -> tuple[str, ...]:
    names = _unpickle_dict(raw, where).get("label_names")
    if not isinstance(names, list) or len(names) != NUM_CLASSES or not all(isinstance(n, (bytes, str)) for n in names):
        raise UserError(f"{where}: label_names must be a list of {NUM_CLASSES} names")
    try:
        return tuple(name.decode("utf-8") if isinstance(name, bytes) else name for name in names)
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: a class name in label_names is not UTF-8 text ({exc.object[:40]!r})") from None


def _batch(raw: bytes, where: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle_dict(raw, where)
    data, labels = batch.get("data"), batch.get("labels")
    if data is None or labels is None:
        raise UserError(f"{where}: a CIFAR batch needs 'data' and 'labels', found keys {sorted(batch)}")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        spec = f"{data.dtype} {list(data.shape)}" if isinstance(data, np.ndarray) else type(data).__name__
        raise UserError(f"{where}: data is {spec}, expected a uint8 [N, {3 * SIDE * SIDE}] array")
    try:
        labels = np.asarray(labels)
    except (TypeError, ValueError) as exc:
        raise UserError(f"{where}: labels are not a flat list of ints ({exc})") from None
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise UserError(f"{where}: labels must be a flat list of ints, got {labels.dtype} {list(labels.shape)}")
    if len(labels) != len(data):
        raise UserError(f"{where}: {len(data)} images but {len(labels)} labels")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{where}: labels must lie in 0..{num_classes - 1}, found {labels.min()}..{labels.max()}")
    images = data.reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)
