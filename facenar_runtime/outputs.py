"""The output guard every command runs for its outputs before doing any work.

`--force` may replace a regular file with a file, or a folder facenar wrote (it carries MARKER,
which only facenar writes: a record file such as demo.json can be copied, so it proves nothing)
with a new folder. It never replaces anything else (a FIFO, a device node, a socket, a symbolic
link: `--json /dev/null --force` must not replace the machine's /dev/null), never a folder
facenar did not write, never an input of the same command (or a folder holding one), and two
outputs of one command may not share a path. Inputs are every file or folder the command reads,
defaults included (`inputs` takes a path or a list of paths per option). An output inside an
input folder (`--images photos --out photos/aligned`) is allowed only where it replaces nothing
of the input: a new name, or a folder facenar wrote there. The guard also checks that each
output can be created at all (parent is a writable folder, name not too long), so hours of work
are never computed and then lost to an unwritable path.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Mapping

from facenar_runtime.errors import UserError

MARKER = ".facenar"
PathArg = str | os.PathLike | None
InputArg = PathArg | Iterable[str | os.PathLike]


def is_ours(folder: str | os.PathLike) -> bool:
    """True for a folder facenar wrote (it holds MARKER) and for an empty one."""
    folder = Path(folder)
    return (folder / MARKER).is_file() or not any(folder.iterdir())


def kind_of(path: str | os.PathLike) -> str | None:
    """What is at `path` without following a final symlink: 'file', 'folder', None when nothing,
    else a name for what no output may replace (symbolic link, FIFO, device node, socket)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # nothing there, or a parent that is no folder / a link loop (the later checks name it)
        return None
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device node"),
                       (stat.S_ISBLK, "a device node"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def refuse_special(option: str, path: str | os.PathLike) -> None:
    """An output may replace only a regular file or a folder: never a link, FIFO, device or socket."""
    kind = kind_of(path)
    if kind not in (None, "file", "folder"):
        raise UserError(f"{option} {path} is {kind}, not a regular file; not replacing it, even with --force; "
                        "choose another output")


def _resolved(option: str, path: str | os.PathLike) -> Path:
    try:
        return Path(os.path.abspath(Path(path).expanduser())).resolve()
    except RuntimeError:  # Python 3.11 raises RuntimeError("Symlink loop from ...")
        raise UserError(f"{option} {path}: a loop of symbolic links; fix the links or choose another path") from None
    except OSError as exc:  # ELOOP from the OS, a name too long ...
        raise UserError(f"{option} {path}: {exc.strerror or exc}") from None


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


def _input_paths(inputs: Mapping[str, InputArg]) -> list[tuple[str, Path]]:
    """(option, resolved path) for every declared input; a value may be one path or a list of them."""
    sources = []
    for option, value in inputs.items():
        if value is None:
            continue
        paths = [value] if isinstance(value, (str, os.PathLike)) else value
        sources += [(option, _resolved(option, path)) for path in paths if path is not None]
    return sources


def check_outputs(force: bool, files: Mapping[str, PathArg] = {}, folders: Mapping[str, PathArg] = {},
                  inputs: Mapping[str, InputArg] = {}) -> None:
    """Refuse, with one line, any output that would lose data or cannot be written.

    files/folders map the option name (for messages) to its path, inputs to a path or a list of
    paths (every file the command reads, defaults included); None entries are skipped.
    """
    outputs = [(option, Path(path), False) for option, path in files.items() if path is not None]
    outputs += [(option, Path(path), True) for option, path in folders.items() if path is not None]
    sources = _input_paths(inputs)
    seen: dict[Path, str] = {}
    for option, path, folder in outputs:
        refuse_special(option, path)
        real = _resolved(option, path)
        if real in seen:
            raise UserError(f"{seen[real]} and {option} are the same path {path}; give each output its own path")
        seen[real] = option
        for source_option, source in sources:
            if _within(source, real):
                raise UserError(f"{option} {path} would replace the input {source_option} {source}; "
                                "choose another output")
        for source_option, source in sources:  # inside an input folder: only new names, or folders facenar wrote
            if real.is_relative_to(source) and os.path.lexists(path) and not (folder and is_ours(path)):
                raise UserError(f"{option} {path} would replace what is inside the input {source_option} {source}, "
                                "even with --force; choose an output outside it")
        _check_existing(option, path, folder, force)
        check_creatable(path, option)


def _check_existing(option: str, path: Path, folder: bool, force: bool) -> None:
    kind = kind_of(path)
    if kind is None:
        return
    if not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")
    if folder and kind != "folder":
        raise UserError(f"{option} {path} is a file, not an output folder; not replacing it")
    if not folder and kind == "folder":
        raise UserError(f"{option} {path} is a folder; the output is a file, not replacing it even with --force")
    if folder and not is_ours(path):
        raise UserError(f"{option} {path} is a folder facenar did not write (no {MARKER} marker); "
                        "not replacing it, even with --force; move it away or choose another output")
