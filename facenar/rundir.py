"""One run directory per job: resolved config, log, metrics CSV mirrored to TensorBoard.

Search and train share this so that `--resume RUN_DIR` means the same thing everywhere: the
stored config must match, and the metrics CSV is cut back to the checkpoint (facenar.checkpoint)
so the resumed record equals an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from data_tools.atomic import atomic_path, process_alive, write_text_atomic
from data_tools.cli import UserError, read_json
from data_tools.outputs import MARKER, check_outputs
from data_tools.textinput import read_text

CONFIG_NAME = "config.json"
LOG_NAME = "run.log"
TENSORBOARD_DIR = "tensorboard"
OWNER_NAME = "owner.pid"  # the process writing the run right now; a killed run leaves a dead pid behind


class RunDir:
    """A run folder; `check` (before any work) and `create` guard a new one, `open_resume` requires one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @staticmethod
    def check(path: str | Path, force: bool, inputs: dict | None = None) -> None:
        """Refuse an --out that would lose data or cannot be written, before anything is computed.

        A run folder facenar started that holds no checkpoint yet (an early error, a kill in the
        first epoch) has nothing to lose, so it is reused without --force; --force replaces only a
        folder facenar wrote (check_outputs), never one of the user's.
        """
        check_outputs(force or _unfinished(Path(path)), folders={"--out": path}, inputs=inputs or {})

    @classmethod
    def create(cls, path: str | Path, config: dict, force: bool = False) -> "RunDir":
        """A fresh run folder with its MARKER and config.json; a previous run there is removed (see check)."""
        run = cls(path)
        if run.path.is_dir() and any(run.path.iterdir()):
            cls.check(run.path, force)  # a folder of the user's is refused here, even with --force
            shutil.rmtree(run.path)
        run.path.mkdir(parents=True, exist_ok=True)
        (run.path / MARKER).touch()
        write_text_atomic(run.path / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
        return run

    @classmethod
    def open_resume(cls, path: str | Path, config: dict, ignore: Iterable[str] = (), upgrade=None) -> "RunDir":
        """Open an existing run; its stored config (under today's names: `upgrade`) must equal `config`
        except for `ignore` keys."""
        run = cls(path)
        stored = read_run_config(run.path)
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


@contextlib.contextmanager
def owning(path: str | Path):
    """Mark the run folder as being written by this process for the duration (what `run_owner` reads)."""
    owner = Path(path) / OWNER_NAME
    write_text_atomic(owner, f"{os.getpid()}\n")
    try:
        yield
    finally:
        owner.unlink(missing_ok=True)


def run_owner(path: str | Path) -> int | None:
    """The pid of a live process still writing this run folder, else None (finished, or killed)."""
    try:
        pid = int((Path(path) / OWNER_NAME).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid) else None


def _unfinished(path: Path) -> bool:
    """A run folder facenar created (MARKER + config.json) in which no checkpoint was written yet."""
    return (path.is_dir() and (path / MARKER).is_file() and (path / CONFIG_NAME).is_file()
            and not any(path.glob("*.pt")))


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
        text = read_text(self.path, "metrics table", max_bytes=1 << 30)
        try:
            return list(csv.DictReader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise UserError(f"metrics table {self.path} is damaged ({exc}); remove it or start a new run") from None

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
