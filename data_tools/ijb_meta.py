"""The IJB-B / IJB-C release layout (`loose_crop/` + `meta/`) and its meta files, read torch-free.

The meta files are big (IJB-C: 469,375 image lines, 15,658,489 pair lines), so each is parsed by
pandas' C reader in one pass; only when that fails (or a value is out of range) is the file walked
line by line, to name the first bad line in the one error line the user sees.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from facenar_runtime.errors import UserError

# target -> file prefix and the two 1:N gallery names of the release
TARGETS = {"IJBC": ("ijbc", ("G1", "G2")), "IJBB": ("ijbb", ("S1", "S2"))}
LANDMARK_FIELDS = 12        # image, five (x, y) landmark pairs, faceness score
_MAX_LINE = 4096


@dataclass(frozen=True)
class IJBLayout:
    """Where one IJB release's files are; `target` is IJBC or IJBB."""
    root: Path
    target: str

    def meta(self, name: str) -> Path:
        return self.root / "meta" / f"{TARGETS[self.target][0]}_{name}"

    @property
    def images(self) -> Path:
        return self.root / "loose_crop"

    @property
    def tid_mid(self) -> Path:
        return self.meta("face_tid_mid.txt")

    @property
    def landmarks(self) -> Path:
        return self.meta("name_5pts_score.txt")

    @property
    def pairs(self) -> Path:
        return self.meta("template_pair_label.txt")

    @property
    def galleries(self) -> tuple[Path, Path]:
        return tuple(self.meta(f"1N_gallery_{g}.csv") for g in TARGETS[self.target][1])

    @property
    def probes(self) -> Path:
        return self.meta("1N_probe_mixed.csv")


def locate(root: str | os.PathLike, target: str | None = None) -> IJBLayout:
    """The layout under `root` (a release folder such as IJB_release/IJBC, or its parent).

    Without `target`, it is the one whose meta/<prefix>_face_tid_mid.txt exists.
    """
    root = Path(root)
    if target is not None and target.upper() not in TARGETS:
        raise UserError(f"--target {target}: expected one of {', '.join(TARGETS)}")
    wanted = [target.upper()] if target else list(TARGETS)
    for folder in (root, *(root / name for name in wanted)):
        found = [t for t in wanted if IJBLayout(folder, t).tid_mid.is_file()]
        if len(found) > 1:
            raise UserError(f"{folder / 'meta'} holds both IJB-B and IJB-C meta files; give --target IJBC or IJBB")
        if found:
            layout = IJBLayout(folder, found[0])
            if not layout.images.is_dir():
                raise UserError(f"{layout.images} not found; --ijb DIR must hold loose_crop/ and meta/")
            return layout
    names = " or ".join(IJBLayout(root, t).tid_mid.name for t in wanted)
    raise UserError(f"{root / 'meta'}: no {names} found; --ijb DIR must hold loose_crop/ and meta/ of the "
                    "IJB release (e.g. IJB_release/IJBC)")


def _number(kind: type) -> Callable[[str], object]:
    def parse(text: str):
        value = kind(text)
        if kind is float and not math.isfinite(value):
            raise ValueError(text)
        return value
    parse.__name__ = kind.__name__
    return parse


def _scan(path: Path, what: str, sep: str | None, fields: Sequence[Callable], exact: bool, header: bool,
          check: Callable[[list], str | None] | None = None) -> None:
    """Walk the file line by line and raise UserError at the first line that breaks the format."""
    wanted = f"{len(fields)}{'' if exact else ' or more'}"
    with open(path, "rb") as handle:
        number = 0
        while True:
            raw = handle.readline(_MAX_LINE)
            if not raw:
                return
            number += 1
            if len(raw) >= _MAX_LINE and not raw.endswith(b"\n"):
                raise UserError(f"{path}:{number}: line longer than {_MAX_LINE} bytes; is this the {what}?")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UserError(f"{path}:{number}: not UTF-8 text; is this the {what}?") from None
            if header and number == 1:
                continue
            parts = line.strip().split(sep) if sep else line.split()
            if not line.strip():
                continue
            if len(parts) < len(fields) or (exact and len(parts) != len(fields)):
                raise UserError(f"{path}:{number}: expected {wanted} fields in the {what}, got {len(parts)}")
            for index, (convert, text) in enumerate(zip(fields, parts), start=1):
                try:
                    convert(text.strip())
                except ValueError:
                    raise UserError(f"{path}:{number}: field {index} {text.strip()!r} is not "
                                    f"{'an integer' if convert.__name__ == 'int' else 'a finite number'}") from None
            problem = check(parts) if check else None
            if problem:
                raise UserError(f"{path}:{number}: {problem}")


def _read(path: Path, what: str, sep: str, fields: Sequence[Callable], exact: bool = True,
          header: bool = False, check: Callable[[list], str | None] | None = None):
    """The file's columns as arrays (pandas C reader); on any failure, the first bad line as a UserError."""
    import pandas as pd

    if not path.is_file():
        raise UserError(f"{what} {path} not found")
    dtypes = {i: (str if f is str else np.float64 if f.__name__ == "float" else np.int64)
              for i, f in enumerate(fields)}
    width = len(fields)
    try:
        # exact files get one spare column: a line with an extra field fills it, and is refused
        frame = pd.read_csv(path, sep=sep, header=None, skiprows=1 if header else 0, engine="c",
                            names=list(range(width + 1)) if exact else None,
                            usecols=None if exact else list(range(width)),
                            dtype={**dtypes, width: str} if exact else dtypes, skip_blank_lines=True,
                            encoding="utf-8")   # pandas 3 parses floats as float() does, to the last bit
        if exact and frame[width].notna().any():
            raise ValueError("extra field")
        if frame[list(range(width))].isna().to_numpy().any():
            raise ValueError("missing field")
        if len(frame) == 0:
            raise UserError(f"{what} {path} is empty")
        rows = [frame[i].to_numpy() for i in range(len(fields))]
        if any(f.__name__ == "float" and not np.isfinite(col).all() for f, col in zip(fields, rows)):
            raise ValueError("non-finite number")
    except UserError:
        raise
    except Exception as exc:   # pandas' parser errors, bad dtypes, decoding: find the line to name
        _scan(path, what, None if sep == r"\s+" else sep, [_number(f) if f is not str else str for f in fields],
              exact, header, check)
        raise UserError(f"{path}: cannot read the {what} ({type(exc).__name__}: {exc})"[:400]) from None
    return rows


def line_of_row(path: str | os.PathLike, row: int, header: bool = False) -> int:
    """The 1-based line number of data row `row` (0-based; blank lines skipped, as the reader does)."""
    seen = -1
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if (header and number == 1) or not line.strip():
                continue
            seen += 1
            if seen == row:
                return number
    return number


def row_error(path: Path, row: int, message: str, header: bool = False) -> UserError:
    return UserError(f"{path}:{line_of_row(path, row, header)}: {message}")


def read_tid_mid(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`image template_id media_id` lines -> image names, template ids, media ids (file order)."""
    names, templates, medias = _read(path, "template/media file (image tid mid)", r"\s+", [str, int, int])
    return names.astype(str), templates, medias


def read_landmarks(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`image x1 y1 ... x5 y5 score` lines -> names, landmarks [N, 5, 2] float32, faceness float32."""
    columns = _read(path, "landmark file (image, 5 x y pairs, faceness score)", r"\s+",
                    [str] + [float] * (LANDMARK_FIELDS - 1))
    points = np.stack(columns[1:11], axis=1).astype(np.float32).reshape(-1, 5, 2)
    return columns[0].astype(str), points, columns[11].astype(np.float32)


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`template template label` lines -> two template id arrays and labels (bool)."""
    first, second, label = _read(path, "template pair file (tid tid label)", r"\s+", [int, int, int],
                                 check=lambda parts: None if parts[2] in ("0", "1") else
                                 f"label {parts[2]!r} must be 0 or 1")
    if not np.isin(label, (0, 1)).all():
        row = int(np.flatnonzero(~np.isin(label, (0, 1)))[0])
        raise row_error(path, row, f"label '{label[row]}' must be 0 or 1")
    return first, second, label.astype(bool)


def read_1n(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A 1:N gallery or probe CSV: a header line, then template id, subject id, ... per image."""
    if not path.is_file():
        raise UserError(f"1:N file {path} not found")
    with open(path, "rb") as handle:
        first = handle.readline(_MAX_LINE).split(b",")[0].strip()
    if first.isdigit():
        raise UserError(f"{path}:1: expected a header line (TEMPLATE_ID,SUBJECT_ID,...), found data; "
                        "the 1:N files of the IJB release start with a header")
    templates, subjects = _read(path, "1:N file (TEMPLATE_ID,SUBJECT_ID,...)", ",", [int, int],
                                exact=False, header=True)
    return templates, subjects


def check_same_images(tid_path: Path, names: np.ndarray, landmark_path: Path, landmark_names: np.ndarray) -> None:
    """Row k of the template/media file and row k of the landmark file must name the same image."""
    if len(names) != len(landmark_names):
        raise UserError(f"{landmark_path} lists {len(landmark_names)} images but {tid_path} lists {len(names)}; "
                        "row k of one must be row k of the other")
    differ = np.flatnonzero(names != landmark_names)
    if len(differ):
        row = int(differ[0])
        raise row_error(landmark_path, row, f"image {landmark_names[row]!r} but {tid_path.name} row {row + 1} "
                                            f"names {names[row]!r}; row k of one must be row k of the other")
