"""Shared command-line conventions: user errors exit 2 with one line, progress bars only on a TTY."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")


class UserError(Exception):
    """A problem the user can fix (bad path, corrupt file, bad option): printed as one line, exit 2."""


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run a CLI entry point; turn UserError into `error: ...` on stderr and exit code 2."""
    try:
        result = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


def read_json(path: str | os.PathLike, what: str, hint: str = ""):
    """A JSON file the user handed us, or one UserError line saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist" + (f"; {hint}" if hint else ""))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); fix or regenerate it") from None


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", **kwargs) -> Iterable[T]:
    """A tqdm bar when stderr is a terminal (or FACENAR_PROGRESS=1), else the bare iterable."""
    wanted = os.environ.get("FACENAR_PROGRESS")
    show = sys.stderr.isatty() if wanted is None else wanted == "1"
    if not show:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, **kwargs)
