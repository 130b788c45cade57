"""One run directory per job: resolved config, log, metrics CSV mirrored to TensorBoard.

Search and train share this so that `--resume RUN_DIR` means the same thing everywhere: the
stored config must match, and the metrics CSV is cut back to the checkpoint (facenar.checkpoint)
so the resumed record equals an uninterrupted one.
"""
from __future__ import annotations

import csv
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from data_tools.atomic import atomic_path, check_writable, write_text_atomic
from data_tools.cli import UserError, read_json

CONFIG_NAME = "config.json"
LOG_NAME = "run.log"
TENSORBOARD_DIR = "tensorboard"


class RunDir:
    """A run folder; `create` refuses to reuse a non-empty one unless forced, `open_resume` requires one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: str | Path, config: dict, force: bool = False) -> "RunDir":
        run = cls(path)
        if run.path.exists() and any(run.path.iterdir()):
            check_writable(run.path, force)
        run.path.mkdir(parents=True, exist_ok=True)
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
        with open(self.path, newline="", encoding="utf-8") as handle:
            rows = [r for r in csv.DictReader(handle) if float(r[self.key]) <= last_kept]
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns)
            writer.writeheader()
            writer.writerows(rows)

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))


def _fmt(value):
    if isinstance(value, float):
        return repr(value)
    return value
