"""CIFAR-10 and CIFAR-100 as users download them: the python tarball or its extracted folder.

CIFAR-10: `cifar-10-python.tar.gz` / `cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta
with label_names, labels under b'labels'); CIFAR-100: `cifar-100-python.tar.gz` / `cifar-100-python/`
(train, test, meta with fine_label_names, labels under b'fine_labels'). A CifarLayout says which.
The batches are python2 pickles (byte-string keys; b'data' a uint8 [N, 3072] array of row-major
R, G, B planes, the labels a list of ints); they are read with the restricted unpickler, so a
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

from facenar_runtime.errors import UserError
from facenar_runtime.safe_pickle import ForbiddenGlobal, restricted_loads
from facenar_runtime.textinput import read_bytes

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
class CifarLayout:
    """The file names and pickle keys of one CIFAR variant."""

    name: str
    folder: str
    tarball: str
    train: tuple[str, ...]   # training batch files
    test: str                # test batch file
    meta: str
    names_key: str           # the class-name list in `meta`
    labels_key: str          # the label list in every batch
    num_classes: int


CIFAR10 = CifarLayout("CIFAR-10", FOLDER, TARBALL, TRAIN_BATCHES, TEST_BATCH, META, "label_names", "labels",
                      NUM_CLASSES)
CIFAR100 = CifarLayout("CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", ("train",), "test", "meta",
                       "fine_label_names", "fine_labels", 100)


@dataclass(frozen=True)
class CifarSplit:
    images: np.ndarray   # [N, 32, 32, 3] uint8 RGB
    labels: np.ndarray   # [N] int64 in 0..9
    classes: tuple[str, ...]


def load_cifar(source: str | os.PathLike, split: str = "train", layout: CifarLayout = CIFAR10) -> CifarSplit:
    """The `train` or `test` split of a tarball or folder of the given CIFAR layout."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    names = (*layout.train, layout.meta) if split == "train" else (layout.test, layout.meta)
    raw, where = _read_members(_locate(Path(source), layout), names, layout)
    classes = _class_names(raw[layout.meta], where(layout.meta), layout)
    batches = [_batch(raw[name], where(name), len(classes), layout.labels_key) for name in names[:-1]]
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


def _locate(path: Path, layout: CifarLayout) -> Path:
    """The tarball or batch folder that `path` names, or a folder holding one of them."""
    if path.is_file():
        return path
    if (path / layout.meta).exists() or any((path / name).exists() for name in layout.train):
        return path
    for candidate in (path / layout.folder, path / layout.tarball):
        if candidate.exists():
            return candidate
    files = ", ".join((f"{layout.train[0][:-1]}1..{len(layout.train)}" if len(layout.train) > 1 else layout.train[0],
                       layout.test, layout.meta))
    raise UserError(f"{path} is neither {layout.tarball} nor a {layout.folder}/ folder ({files}); "
                    "download the python version from https://www.cs.toronto.edu/~kriz/cifar.html")


def _read_members(path: Path, names: tuple[str, ...], layout: CifarLayout):
    """{name: raw bytes} for the wanted batch files, and a function naming where each came from."""
    if path.is_dir():
        found = {}
        for name in names:
            if not os.path.exists(path / name):
                raise UserError(f"{path / name} is missing; the {layout.folder} folder is incomplete")
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
        raise UserError(f"{path} has no {', '.join(missing)}; is it the {layout.name} python version "
                        f"({layout.tarball})?")
    return found, lambda name: f"{path}:{layout.folder}/{name}"


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


def _class_names(raw: bytes, where: str, layout: CifarLayout) -> tuple[str, ...]:
    names = _unpickle_dict(raw, where).get(layout.names_key)
    count = layout.num_classes
    if not isinstance(names, list) or len(names) != count or not all(isinstance(n, (bytes, str)) for n in names):
        raise UserError(f"{where}: {layout.names_key} must be a list of {count} names")
    try:
        return tuple(name.decode("utf-8") if isinstance(name, bytes) else name for name in names)
    except UnicodeDecodeError as exc:
        raise UserError(f"{where}: a class name in {layout.names_key} is not UTF-8 text ({exc.object[:40]!r})") from None


def _batch(raw: bytes, where: str, num_classes: int, labels_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle_dict(raw, where)
    data, labels = batch.get("data"), batch.get(labels_key)
    if data is None or labels is None:
        raise UserError(f"{where}: a CIFAR batch needs 'data' and '{labels_key}', found keys {sorted(batch)}")
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
