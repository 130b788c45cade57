"""One run directory per job: resolved config, log, metrics CSV mirrored to TensorBoard.

Search and train share this so that `--resume RUN_DIR` means the same thing everywhere: the
stored config must match, and the metrics CSV is cut back to the checkpoint (facenar.checkpoint)
so the resumed record equals an uninterrupted one.

A run folder has one owner at a time: the process that checks, creates or resumes it holds an
advisory lock (flock) on RUN_DIR/LOCK_NAME, which the kernel drops when that process ends, even
by kill -9, so no stale lock is ever left behind. A second search, train or resume there gets
one error line instead of deleting or appending to a run that is being written.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from facenar_runtime.atomic import atomic_path, write_text_atomic
from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json, read_csv
from facenar_runtime.outputs import MARKER, check_outputs

CONFIG_NAME = "config.json"
LOG_NAME = "run.log"
TENSORBOARD_DIR = "tensorboard"
LOCK_NAME = ".facenar.lock"
# what facenar writes when a run starts, before any result: a folder holding only these has nothing to lose
START_FILES = frozenset({MARKER, CONFIG_NAME, LOG_NAME, LOCK_NAME})
_held: dict[Path, int] = {}  # run folder -> descriptor of its lock file, held by this process until it exits


def _forget_locks_in_child() -> None:
    """A forked child (a DataLoader worker) shares the lock's open file: closing it there means the lock
    ends with the owner, not with its last worker (which, orphaned by kill -9, lives on for seconds)."""
    for fd in _held.values():
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_locks_in_child)


class RunDir:
    """A run folder; `check` (before any work) and `create` guard a new one, `open_resume` requires one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @staticmethod
    def check(path: str | Path, force: bool, inputs: dict | None = None, lock: bool = True) -> None:
        """Refuse an --out that would lose data, cannot be written or is in use, before anything is computed.

        A run folder facenar started that holds nothing but START_FILES (an early error, a kill
        before the first result) has nothing to lose, so it is reused without --force; anything
        else there (a checkpoint, a record, the user's notes) needs --force, which replaces only a
        folder facenar wrote (check_outputs), never one of the user's. With `lock` (the process
        that will write the run; other DDP ranks pass False) the folder becomes this process's.
        """
        check_outputs(force or _unstarted(Path(path)), folders={"--out": path}, inputs=inputs or {})
        if lock and Path(path).is_dir():
            take_ownership(path)

    @classmethod
    def create(cls, path: str | Path, config: dict, force: bool = False) -> "RunDir":
        """A fresh run folder with its MARKER and config.json; a previous run there is removed (see check).

        The folder itself is emptied, not replaced, so the lock taken before stays on it.
        """
        run = cls(path)
        if run.path.is_dir() and set(os.listdir(run.path)) - {LOCK_NAME}:
            cls.check(run.path, force)  # a folder of the user's is refused here, even with --force
        run.path.mkdir(parents=True, exist_ok=True)
        take_ownership(run.path)
        for entry in run.path.iterdir():
            if entry.name == LOCK_NAME:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        (run.path / MARKER).touch()
        write_text_atomic(run.path / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
        return run

    @classmethod
    def open_resume(cls, path: str | Path, config: dict, ignore: Iterable[str] = (), upgrade=None,
                    lock: bool = True) -> "RunDir":
        """Open an existing run; its stored config (under today's names: `upgrade`) must equal `config`
        except for `ignore` keys. With `lock` the run becomes this process's (see take_ownership)."""
        run = cls(path)
        stored = read_run_config(run.path)
        if lock:
            take_ownership(run.path)
        stored = upgrade(stored) if upgrade else stored
        skip = set(ignore)
        differ = sorted(k for k in set(stored) | set(config)
                        if k not in skip and stored.get(k) != config.get(k))
        if differ:
            details = ", ".join(f"{k}: {stored.get(k)!r} -> {config.get(k)!r}" for k in differ)
            raise UserError(f"--resume {run.path}: configuration differs from the stored run ({details}); "
                            "resume with the same options or start a new run")
        return run

    def log(self, message: str, echo: bool = True) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        with open(self.path / LOG_NAME, "a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {message}\n")
        if echo:
            print(message, file=sys.stderr, flush=True)


def _unstarted(path: Path) -> bool:
    """A run folder facenar created (MARKER + config.json) that holds nothing but START_FILES."""
    try:
        names = set(os.listdir(path))
    except OSError:
        return False
    return {MARKER, CONFIG_NAME} <= names <= START_FILES and (path / MARKER).is_file()


def take_ownership(folder: str | Path, advice: str = "wait for it to end, or choose another --out") -> None:
    """Make this process the one owner of a run folder, or raise one error line if another has it.

    The lock is an flock on FOLDER/LOCK_NAME held until this process ends (the kernel releases
    it on any exit, kill -9 included). Taking it again in the same process is a no-op, as long
    as the lock file is still the one locked (a folder deleted and made again is locked anew).
    """
    import fcntl

    folder = Path(folder)
    key, lock_path = folder.resolve(), folder / LOCK_NAME
    held = _held.get(key)
    if held is not None:
        try:
            if os.fstat(held).st_ino == os.stat(lock_path).st_ino:
                return
        except OSError:
            pass
        os.close(_held.pop(key))
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise UserError(f"{folder}: cannot take the run folder's lock {LOCK_NAME} ({exc.strerror or exc})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise UserError(f"{folder} is in use by another facenar process (pid {owner}); {advice}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def release_ownership(folder: str | Path) -> None:
    """Give up the lock take_ownership took (when the job ends; process exit does the same)."""
    try:
        key = Path(folder).resolve()
    except (OSError, RuntimeError):
        return
    fd = _held.pop(key, None)
    if fd is not None:
        os.close(fd)


def run_folder(out: str | None, resume: str | None) -> str | None:
    """The run folder of a search or training command: --resume RUN_DIR continues that run, --out names a new
    one (None: the engine names one, runs/<kind>-<time>); both only when they name the same folder."""
    if resume and out and Path(out).resolve() != Path(resume).resolve():
        raise UserError("give either --out (a new run) or --resume RUN_DIR (continue that run), not both")
    return resume or out


def default_run_folder(kind: str) -> Path:
    """runs/<kind>-<local time>, e.g. runs/search-20260101-120000 (rank 0's clock: the engines broadcast it)."""
    return Path("runs") / time.strftime(f"{kind}-%Y%m%d-%H%M%S")


def read_run_config(path: str | Path) -> dict:
    """The config.json of an existing run directory (what --resume starts from and is checked against)."""
    stored_path = Path(path) / CONFIG_NAME
    if not stored_path.is_file():
        raise UserError(f"--resume {path}: no {CONFIG_NAME} there; not a run directory, nothing to resume")
    stored = read_json(stored_path, "run configuration")
    if not isinstance(stored, dict):
        raise UserError(f"{stored_path} is not a run configuration (expected a JSON object)")
    return stored


class MetricsCSV:
    """Append-only metrics table with a fixed header; `truncate_after` cuts rows back for a resume.

    With `tensorboard` (a tag prefix), every numeric value of a row is also written as a scalar at
    step row[key] into RUN_DIR/tensorboard, the event files arcface_torch users open: the same
    numbers as the CSV, from one place, for search and training alike.
    """

    def __init__(self, path: str | Path, columns: list[str], key: str, tensorboard: str | None = None):
        self.path, self.columns, self.key = Path(path), list(columns), key
        self.tag, self._tb = tensorboard, None

    def append(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="raise")
            if new:
                writer.writeheader()
            writer.writerow({c: _fmt(row.get(c, "")) for c in self.columns})
        if self.tag is not None:
            self._scalars(row)

    def _scalars(self, row: dict) -> None:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.path.parent / TENSORBOARD_DIR))
        for name, value in row.items():
            if name != self.key and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tb.add_scalar(self.tag + name, value, row[self.key])
        self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def truncate_after(self, last_kept: float) -> None:
        """Drop rows whose `key` column is greater than `last_kept` (rows written after the checkpoint)."""
        if not self.path.exists():
            return
        rows = [r for r in self.read() if self._key(r) <= last_kept]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def read(self) -> list[dict]:
        """The rows, through the bounded reader: a damaged file (NUL bytes, not UTF-8) is one line naming it."""
        if not self.path.exists():
            return []
        return read_csv(self.path, "metrics table", "remove it or start a new run", max_bytes=1 << 30)

    def _key(self, row: dict) -> float:
        try:
            return float(row[self.key])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"metrics table {self.path} is damaged (a row without a number in column "
                            f"{self.key!r}); remove it or start a new run") from None


def _fmt(value):
    if isinstance(value, float):
        return repr(value)
    return value
