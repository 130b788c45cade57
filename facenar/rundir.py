"""One run directory per job: resolved config, log, metrics CSV, atomic checkpoints, RNG states.

Search and train share this so that `--resume RUN_DIR` means the same thing everywhere: the
stored config must match, the last checkpoint is restored with every RNG, and the metrics CSV
is cut back to the checkpoint so the resumed record equals an uninterrupted one.
"""
from __future__ import annotations

import csv
import json
import random
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from data_tools.atomic import atomic_path, check_writable, write_text_atomic
from data_tools.cli import UserError, read_json

CONFIG_NAME = "config.json"
LOG_NAME = "run.log"


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
    def open_resume(cls, path: str | Path, config: dict, ignore: Iterable[str] = ()) -> "RunDir":
        """Open an existing run; its stored config must equal `config` except for `ignore` keys."""
        run = cls(path)
        stored = read_run_config(run.path)
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
    """Append-only metrics table with a fixed header; `truncate_after` cuts rows back for a resume."""

    def __init__(self, path: str | Path, columns: list[str], key: str):
        self.path, self.columns, self.key = Path(path), list(columns), key

    def append(self, row: dict) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="raise")
            if new:
                writer.writeheader()
            writer.writerow({c: _fmt(row.get(c, "")) for c in self.columns})

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


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """torch.save through a temporary file, so a kill never leaves a truncated checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a facenar checkpoint safely (weights_only: no arbitrary code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise UserError(f"{path} is not a readable facenar checkpoint ({type(exc).__name__}: {exc})") from None


def capture_rng() -> dict:
    """Every global RNG as tensors and plain values (loadable with weights_only=True)."""
    version, mt_state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "python": [version, list(mt_state), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), int(np_pos), int(np_has_gauss), float(np_gauss)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict) -> None:
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
