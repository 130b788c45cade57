"""Atomic outputs: write to a temporary sibling, rename on success, remove it on failure.

Users interrupt long jobs; a half-written .rec or checkpoint that looks complete is worse than
none, so every output goes through these helpers. The rules that keep them from losing data:
- a folder output gets the marker file MARKER, and an existing folder is replaced only if it
  carries that marker (facenar wrote it) or is empty: a folder of the user's is never deleted;
- a file output replaces only a regular file, never a link, FIFO, device node or socket;
- only what existed when the write began (and the caller allowed replacing, see
  facenar_runtime.outputs) is replaced; an output that appeared meanwhile (a second run to the same
  path) makes the final rename fail instead of silently replacing it;
- temporary names carry the writer's pid (`.NAME.PID.XXXX.tmp`), so a later write to the same
  path removes the leftovers of a killed writer, and only when that process is gone.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from facenar_runtime.errors import ENVIRONMENT_ERRNOS, UserError, is_torch_write_failure, os_error, torch_write_error
from facenar_runtime.outputs import MARKER, is_ours, refuse_special

_RENAME_NOREPLACE = 1


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(name)}\.(\d+)\.[\w-]+\.tmp$")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def remove_stale_temps(target: Path) -> list[Path]:
    """Delete `.NAME.PID.*.tmp` siblings of `target` whose writer process no longer exists."""
    pattern, removed = _temp_pattern(target.name), []
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        match = pattern.match(sibling.name)
        if not match or process_alive(int(match.group(1))):
            continue
        if sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                sibling.unlink()
        removed.append(sibling)
    return removed


def _renameat2(source: Path, target: Path) -> bool:
    """rename(2) that fails with EEXIST if `target` exists; False where the kernel/libc lack it."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    result = function(at_fdcwd, os.fsencode(source), at_fdcwd, os.fsencode(target), _RENAME_NOREPLACE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS):  # filesystem or kernel without RENAME_NOREPLACE
        return False
    raise OSError(code, os.strerror(code), os.fsdecode(target))


def rename_no_replace(source: Path, target: Path) -> None:
    """Move `source` to `target`, failing with FileExistsError rather than replacing anything there."""
    if _renameat2(source, target):
        return
    if source.is_dir():
        os.rename(source, target)  # POSIX: fails on a non-empty folder or a file, replaces only an empty folder
    else:
        os.link(source, target)  # fails with EEXIST; the link is atomic
        os.unlink(source)


def _install(tmp: Path, target: Path, existed: bool) -> None:
    """Put the finished `tmp` at `target`, replacing only what existed at the start."""
    if tmp.is_dir():
        (tmp / MARKER).touch()
    if not existed or not os.path.lexists(target):
        rename_no_replace(tmp, target)
    elif target.is_dir() and not target.is_symlink():
        if not tmp.is_dir():
            raise UserError(f"{target} is a folder; the output is a file, not replacing it even with --force")
        if not is_ours(target):
            raise UserError(f"{target} is a folder facenar did not write (no {MARKER} marker); "
                            "not replacing it, even with --force; move it away or choose another output")
        old = tmp.with_name(f".{target.name}.{os.getpid()}.old.tmp")
        os.rename(target, old)
        rename_no_replace(tmp, target)
        shutil.rmtree(old)
    elif tmp.is_dir():
        raise UserError(f"{target} is a file; the output is a folder, choose another path")
    else:
        refuse_special("output", target)  # also where a caller skipped the guard, or it changed since
        os.replace(tmp, target)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it becomes `path` (file or folder).

    Write faults (disk full, read-only folder, torch.save failing) come out as one error naming
    `path`, and the temporary file or folder is gone.
    """
    target = Path(path)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(target)
        existed = os.path.lexists(target)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        os.unlink(tmp_name)
        tmp = Path(tmp_name)
        yield tmp
        try:
            _install(tmp, target, existed)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):  # the no-replace rename refused
                raise UserError(f"{target} appeared while this command was writing it (another run?); "
                                "not replacing it; rerun with --force to replace it, or choose another output"
                                ) from None
            raise
    except OSError as exc:
        if _about_output(exc, target, tmp):
            raise os_error(exc, target) from None
        raise
    except UserError as exc:  # e.g. from a nested atomic write inside a folder output: name the real path
        if tmp is not None and str(tmp) in str(exc):
            raise type(exc)(str(exc).replace(str(tmp), str(target))) from None
        raise
    except RuntimeError as exc:
        if is_torch_write_failure(exc):
            raise torch_write_error(target) from None
        raise
    finally:
        if tmp is not None and tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp is not None and os.path.lexists(tmp):
            with contextlib.suppress(OSError):
                tmp.unlink()


def _about_output(exc: OSError, target: Path, tmp: Path | None) -> bool:
    """Whether an OSError raised while writing concerns the output (else it is about an input)."""
    if exc.filename is None:  # e.g. write() hitting a full disk: no name, clearly the output
        return exc.errno in ENVIRONMENT_ERRNOS or exc.errno == errno.EROFS
    name = Path(os.fsdecode(exc.filename))
    if name.parent == target.parent and _temp_pattern(target.name).match(name.name):
        return True  # creating the temporary sibling failed
    return name in (target, target.parent) or (tmp is not None and name.is_relative_to(tmp))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb", **kwargs) -> Iterator:
    """open() for writing whose result appears at `path` only when the block succeeds."""
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
