"""Atomic outputs: write to a temporary sibling, rename on success, remove it on failure.

Users interrupt long jobs; a half-written .rec or checkpoint that looks complete is worse than
none, so every output goes through these helpers.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from data_tools.cli import UserError


def check_writable(path: str | os.PathLike, force: bool) -> None:
    """Refuse to replace an existing output unless --force was given."""
    if os.path.exists(path) and not force:
        raise UserError(f"{path} already exists; pass --force to overwrite it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path` (file or folder)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp_name)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if target.is_dir() and not target.is_symlink():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


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


def check_not_inside(out: str | os.PathLike, source: str | os.PathLike) -> None:
    """Refuse an output folder that is, or contains, the input (--force would delete the input)."""
    out_path, source_path = Path(out).resolve(), Path(source).resolve()
    if source_path == out_path or source_path.is_relative_to(out_path):
        raise UserError(f"output {out} would replace the input {source}; choose another output folder")
