"""The output guard every command runs for its outputs before doing any work.

`--force` may replace a file with a file, or a folder facenar wrote (it carries MARKER) with a
new folder. It never deletes a folder facenar did not write, never an input of the same command
(or a folder holding one), and two outputs of one command may not share a path. An output
inside an input folder (`--images photos --out photos/aligned`) is allowed: replacing it
cannot touch the input. The guard also
checks that each output can be created at all (parent is a writable folder, name not too long),
so hours of work are never computed and then lost to an unwritable path.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from facenar_runtime.errors import UserError

MARKER = ".facenar"
# folders written before MARKER existed, recognised by the format their own record declares
_LEGACY_RECORDS = {"demo.json": "facenar-demo", "proxy.json": "facenar-proxy-v1"}
PathArg = str | os.PathLike | None


def is_ours(folder: str | os.PathLike) -> bool:
    """True for a folder facenar wrote (MARKER, or an older demo/proxy record) and for an empty one."""
    folder = Path(folder)
    if (folder / MARKER).is_file() or not any(folder.iterdir()):
        return True
    for name, fmt in _LEGACY_RECORDS.items():
        try:
            with open(folder / name, encoding="utf-8") as handle:
                if json.loads(handle.read(1 << 16)).get("format") == fmt:
                    return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def _resolved(path: PathArg) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def check_creatable(path: str | os.PathLike, option: str = "--out") -> None:
    """The nearest existing ancestor of `path` must be a writable folder and every new name short enough."""
    path = Path(os.path.abspath(path))
    ancestor = path.parent
    while not os.path.lexists(ancestor):
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{option} {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        reason = "read-only file system" if _read_only(ancestor) else "permission denied"
        raise UserError(f"{option} {path}: cannot write in {ancestor} ({reason})")
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    for part in path.relative_to(ancestor).parts:
        if len(os.fsencode(part)) > limit:
            raise UserError(f"{option} {path}: the name {part[:40]}... is longer than {limit} bytes")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_outputs(force: bool, files: Mapping[str, PathArg] = {}, folders: Mapping[str, PathArg] = {},
                  inputs: Mapping[str, PathArg] = {}) -> None:
    """Refuse, with one line, any output that would lose data or cannot be written.

    files/folders/inputs map the option name (for messages) to its path; None entries are skipped.
    """
    outputs = [(option, Path(path), False) for option, path in files.items() if path is not None]
    outputs += [(option, Path(path), True) for option, path in folders.items() if path is not None]
    sources = [(option, _resolved(path)) for option, path in inputs.items() if path is not None]
    seen: dict[Path, str] = {}
    for option, path, folder in outputs:
        real = _resolved(path)
        if real in seen:
            raise UserError(f"{seen[real]} and {option} are the same path {path}; give each output its own path")
        seen[real] = option
        for source_option, source in sources:
            if _within(source, real):
                raise UserError(f"{option} {path} would replace the input {source_option} {source}; "
                                "choose another output")
        _check_existing(option, path, folder, force)
        check_creatable(path, option)


def _check_existing(option: str, path: Path, folder: bool, force: bool) -> None:
    if not os.path.lexists(path):
        return
    if not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")
    is_dir = path.is_dir() and not path.is_symlink()
    if folder and not is_dir:
        raise UserError(f"{option} {path} is a file, not an output folder; not replacing it")
    if not folder and is_dir:
        raise UserError(f"{option} {path} is a folder; the output is a file, not replacing it even with --force")
    if folder and not is_ours(path):
        raise UserError(f"{option} {path} is a folder facenar did not write (no {MARKER} marker); "
                        "not replacing it, even with --force; move it away or choose another output")

