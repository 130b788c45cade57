"""The insightface "emore" dataset layout on top of RecordIO, plus its `property` file.

Layout: images at keys 1..N, identity records at N+1..N+K whose label (start, end) is the
half-open key range of that identity's images, and record 0 whose label is (N+1, N+K+1).
Opening reads only record 0 and the K identity records, so it stays cheap at MS1M scale.
mxnet `im2rec` output has no such header: then every key is an image and carries its own label.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from facenar_runtime.atomic import write_text_atomic
from facenar_runtime.errors import UserError
from data_tools.recordio import IRHeader, RecordReader, RecordWriter, pack_record, unpack_record
from facenar_runtime.textinput import read_text

# Record 0 must keep its framed size between the placeholder and the final version.
_HEADER_PLACEHOLDER = (0.0, 0.0)
# Labels and key ranges are stored as float32, which holds every whole number exactly only up to 2^24;
# a larger (or NaN, inf, negative, fractional) value cannot be a label or key that a writer meant.
MAX_LABEL = 1 << 24


def read_property(folder: str | os.PathLike) -> tuple[int, tuple[int, int]]:
    """(num_classes, (height, width)) from `folder/property` (`num_classes,112,112`)."""
    path = Path(folder) / "property"
    if not path.is_file():
        raise UserError(f"{path} not found; an emore dataset needs a 'property' file "
                        f"containing 'num_classes,height,width' (e.g. 85742,112,112)")
    text = read_text(path, "property file", max_bytes=4096).strip()
    fields = text.split(",")
    try:
        values = [int(field) for field in fields]
    except ValueError:
        values = []
    if len(values) != 3 or min(values) <= 0:
        raise UserError(f"{path}: expected 'num_classes,height,width' with positive integers "
                        f"(e.g. 85742,112,112), found {text[:60]!r}")
    return values[0], (values[1], values[2])


def write_property(folder: str | os.PathLike, num_classes: int,
                   image_size: tuple[int, int] = (112, 112)) -> None:
    write_text_atomic(Path(folder) / "property", f"{num_classes},{image_size[0]},{image_size[1]}")


def _first_label(label: float | tuple[float, ...]) -> float:
    return label if isinstance(label, float) else label[0]


def whole_label(value: float, where: str) -> int:
    """A float32 label or key bound read from a record as an int, or one UserError naming the record."""
    if not (math.isfinite(value) and 0 <= value <= MAX_LABEL and value == int(value)):
        raise UserError(f"{where}: label {value!r} is not a whole number in 0..{MAX_LABEL} (2^24, the largest "
                        "a float32 label holds exactly); the dataset is corrupt")
    return int(value)


class EmoreDataset:
    """Labels and encoded images of an emore (or im2rec) dataset, without decoding anything."""

    def __init__(self, folder: str | os.PathLike, prefix: str = "train"):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"{self.folder} is not a folder; pass the dataset folder "
                            f"(with {prefix}.rec, {prefix}.idx and property)")
        self.num_classes, self.image_size = read_property(self.folder)
        self.reader = RecordReader(self.folder / f"{prefix}.rec", self.folder / f"{prefix}.idx")
        self.has_header = self._read_identities()

    def _read_identities(self) -> bool:
        """Fill the identity ranges from the header layout; False for im2rec files."""
        if 0 not in self.reader:
            return self._scan_labels()
        head, data = unpack_record(self.reader.read(0), f"{self.reader.rec_path} key 0")
        if head.flag < 2 or data:
            return self._scan_labels()
        first, stop = (whole_label(v, f"{self.reader.rec_path} key 0") for v in head.label[:2])
        where = f"{self.reader.rec_path}: identity header (key 0) says ids are keys {first}..{stop - 1}"
        if not 1 <= first <= stop or stop - 1 > int(self.reader.key_array()[-1]):
            raise UserError(f"{where}, which the index does not hold; the dataset is corrupt")
        starts, ends = [], []
        for key in range(first, stop):
            if key not in self.reader:
                raise UserError(f"{where}, but key {key} is missing from {self.reader.idx_path}")
            ident, _ = unpack_record(self.reader.read(key), f"{self.reader.rec_path} key {key}")
            if ident.flag < 2:
                raise UserError(f"{self.reader.rec_path}: key {key} should be an identity record "
                                f"with label (start, end); the dataset is corrupt")
            start, end = (whole_label(v, f"{self.reader.rec_path} key {key}") for v in ident.label[:2])
            if not 1 <= start <= end <= first:
                raise UserError(f"{self.reader.rec_path}: identity record {key} has image range "
                                f"[{start}, {end}) outside keys 1..{first - 1}; the dataset is corrupt")
            starts.append(start)
            ends.append(end)
        self._starts = np.asarray(starts, dtype=np.int64)
        self._ends = np.asarray(ends, dtype=np.int64)
        overlap = np.flatnonzero(self._starts[1:] < self._ends[:-1])
        if overlap.size:
            raise UserError(f"{self.reader.rec_path}: identity records {first + overlap[0]} and "
                            f"{first + overlap[0] + 1} have overlapping or unordered image ranges; "
                            f"the dataset is corrupt")
        self._image_keys = np.arange(1, first, dtype=np.int64)
        return True

    def _scan_labels(self) -> bool:
        """im2rec layout: every key is an image; read each header once for its label."""
        keys = self.reader.key_array()
        labels = np.empty(keys.size, dtype=np.int64)
        for i, key in enumerate(keys.tolist()):
            head, _ = unpack_record(self.reader.read(key), f"{self.reader.rec_path} key {key}")
            labels[i] = whole_label(_first_label(head.label), f"{self.reader.rec_path} key {key}")
        order = np.argsort(labels, kind="stable")
        self._image_keys = keys
        self._sorted_keys = keys[order]
        self._key_labels = labels
        sorted_labels = labels[order]
        self._label_values, self._label_starts = np.unique(sorted_labels, return_index=True)
        self._label_ends = np.append(self._label_starts[1:], sorted_labels.size)
        return False

    # -- public API ------------------------------------------------------------------------
    @property
    def num_images(self) -> int:
        return int(self._image_keys.size)

    @property
    def image_keys(self) -> np.ndarray:
        """Keys of all images, ascending (int64)."""
        return self._image_keys

    def counts(self) -> dict[int, int]:
        """Images per label, for every label that has images."""
        if self.has_header:
            sizes = self._ends - self._starts
            return {int(label): int(size) for label, size in enumerate(sizes) if size}
        sizes = self._label_ends - self._label_starts
        return dict(zip(self._label_values.tolist(), sizes.tolist()))

    @property
    def labels(self) -> list[int]:
        """Labels that have at least one image, ascending."""
        return list(self.counts())

    def keys_of(self, label: int) -> list[int]:
        if self.has_header:
            if not 0 <= label < self._starts.size:
                return []
            return list(range(int(self._starts[label]), int(self._ends[label])))
        i = int(np.searchsorted(self._label_values, label))
        if i >= self._label_values.size or self._label_values[i] != label:
            return []
        return self._sorted_keys[self._label_starts[i]:self._label_ends[i]].tolist()

    def label_of(self, key: int) -> int:
        if self.has_header:
            # Identity ranges are disjoint and ascending in emore files, so bisect the starts.
            i = int(np.searchsorted(self._starts, key, side="right")) - 1
            if i >= 0 and key < self._ends[i]:
                return i
        else:
            i = int(np.searchsorted(self._image_keys, key))
            if i < self._image_keys.size and self._image_keys[i] == key:
                return int(self._key_labels[i])
        raise UserError(f"{self.reader.rec_path}: key {key} is not an image of this dataset")

    def image_labels(self) -> np.ndarray:
        """Label of every image in `image_keys` order (vectorised; for training samplers)."""
        if not self.has_header:
            return self._key_labels
        labels = np.full(self._image_keys.size, -1, dtype=np.int64)
        for label, (start, end) in enumerate(zip(self._starts.tolist(), self._ends.tolist())):
            labels[start - 1:end - 1] = label
        return labels

    def read_image(self, key: int) -> bytes:
        """Encoded image bytes (JPEG/PNG as stored) of `key`."""
        _, data = unpack_record(self.reader.read(key), f"{self.reader.rec_path} key {key}")
        return data


def write_emore(folder: str | os.PathLike, identities: Iterable[Sequence[bytes]], *,
                prefix: str = "train") -> tuple[int, int]:
    """Write identities (lists of encoded images; identity i gets label i) in the emore layout.

    Record 0 is written first as a same-sized placeholder and patched at the end, so the
    identities can stream from a generator and keys stay in ascending file order.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ranges: list[tuple[int, int]] = []
    key = 1
    with RecordWriter(folder / f"{prefix}.rec", folder / f"{prefix}.idx") as writer:
        writer.write(0, pack_record(IRHeader(2, _HEADER_PLACEHOLDER, 0, 0), b""))
        for label, images in enumerate(identities):
            start = key
            for image in images:
                writer.write(key, pack_record(IRHeader(0, float(label), key, 0), bytes(image)))
                key += 1
            ranges.append((start, key))
        num_images = key - 1
        for offset, (start, end) in enumerate(ranges):
            ident_key = num_images + 1 + offset
            writer.write(ident_key, pack_record(IRHeader(2, (start, end), ident_key, 0), b""))
        header = (num_images + 1, num_images + 1 + len(ranges))
        writer.patch(0, pack_record(IRHeader(2, header, 0, 0), b""))
    return num_images, len(ranges)
