"""Shared command-line conventions: one `error:` line instead of a traceback, checked numeric
options, progress bars only on a TTY.

Exit codes: 0 success, 2 a problem the user can fix (bad option, bad or unwritable path, corrupt
input), 1 a fault of the machine (disk full, I/O error, out of memory), 130 interrupted.
"""
from __future__ import annotations

import argparse
import errno
import json
import math
import os
import re
import sys
from typing import Callable, Iterable, Sequence, TypeVar

T = TypeVar("T")

# errno values that say "the machine is in trouble", not "the user passed something wrong"
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.ENFILE, errno.EMFILE,
                      errno.EFBIG, errno.ESTALE, errno.ENODEV, errno.ENXIO}
_WORKER_HEADER = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
_TRACEBACK_LAST = re.compile(r"^[A-Za-z_][\w.]*: ")


class UserError(Exception):
    """A problem the user can fix (bad path, corrupt file, bad option): printed as one line, exit 2."""

    exit_code = 2


class EnvironmentFault(UserError):
    """A fault of the machine rather than of the input (disk full, I/O error): one line, exit 1."""

    exit_code = 1


def os_error(exc: OSError, path: str | os.PathLike | None = None) -> UserError:
    """The one-line error for an OSError: the path (the given one, else the error's) and the OS reason."""
    where = path if path is not None else exc.filename
    reason = exc.strerror or str(exc)
    if where is None:
        message = reason
    elif exc.filename2 is not None and path is None:
        message = f"{os.fsdecode(where)} -> {os.fsdecode(exc.filename2)}: {reason}"
    else:
        message = f"{os.fsdecode(where)}: {reason}"
    fault = EnvironmentFault if exc.errno in ENVIRONMENT_ERRNOS else UserError
    return fault(message)


def is_torch_write_failure(exc: BaseException) -> bool:
    """torch.save's own disk-full/I-O failure, which torch raises as a RuntimeError without errno."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "PytorchStreamWriter failed writing" in text or ("inline_container.cc" in text and "unexpected pos" in text))


def torch_write_error(path: str | os.PathLike | None) -> EnvironmentFault:
    where = f"cannot write {os.fsdecode(path)}" if path is not None else "cannot write a torch file"
    return EnvironmentFault(f"{where}: write failed (disk full or I/O error)")


def machine_fault(exc: BaseException | None) -> str | None:
    """The reason ("No space left on device") when a machine fault lies behind an exception a
    library wrapped, else None.

    Exporters and writers re-raise an OSError as their own error type, sometimes keeping only
    its text; a full disk is still exit 1, not a problem with the user's options.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
            return exc.strerror or os.strerror(exc.errno)
        if is_torch_write_failure(exc):
            return "write failed (disk full or I/O error)"
        for code in ENVIRONMENT_ERRNOS:
            if os.strerror(code) in str(exc):
                return os.strerror(code)
        exc = exc.__cause__ or exc.__context__
    return None


def worker_message(text: str) -> str | None:
    """The original message of an exception torch re-raised from a DataLoader worker, else None.

    torch rebuilds the exception in the main process with the worker's whole traceback as its
    message; the user should see the same line as with --workers 0.
    """
    if not _WORKER_HEADER.match(text):
        return None
    lines = text.rstrip().splitlines()
    for index in range(len(lines) - 1, 0, -1):
        if _TRACEBACK_LAST.match(lines[index]) and not lines[index].startswith(" "):
            return "\n".join([lines[index].split(": ", 1)[1], *lines[index + 1:]])
    return None


def _fail(message: str, code: int) -> None:
    # one line whatever the message quotes (tarfile's errors list every method on its own line); a
    # non-UTF-8 path arrives as surrogate escapes, which no stream can encode: show them as \udcXX
    line = re.sub(r"\s*\n\s*", " ", message.strip())
    print(f"error: {line}".encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)
    sys.exit(code)


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run a CLI entry point behind the error boundary (see the module docstring for exit codes)."""
    try:
        result = main(argv)
    except UserError as exc:
        _fail(worker_message(str(exc)) or str(exc), exc.exit_code)
    except OSError as exc:
        original = worker_message(str(exc))
        if original is not None:
            _fail(original, 2)
        error = os_error(exc)
        _fail(str(error), error.exit_code)
    except RuntimeError as exc:
        if not is_torch_write_failure(exc):
            raise
        _fail(str(torch_write_error(None)), 1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(result if isinstance(result, int) else 0)


# -- numeric options ----------------------------------------------------------------------------
def number(kind: type = int, *, min: float | None = None, max: float | None = None,
           gt: float | None = None, lt: float | None = None) -> Callable[[str], int | float]:
    """An argparse `type=` that parses int or float and enforces a range; floats must be finite.

    Declaring the range with the option (not in the code that uses it) is what lets the test
    `unchecked_numeric_options` prove that no numeric option of a command is left unchecked.
    """
    bounds = [(min, ">=", lambda v, b: v >= b), (gt, ">", lambda v, b: v > b),
              (max, "<=", lambda v, b: v <= b), (lt, "<", lambda v, b: v < b)]
    bounds = [(bound, sign, test) for bound, sign, test in bounds if bound is not None]
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        for bound, sign, test in bounds:
            if not test(value, bound):
                raise argparse.ArgumentTypeError(f"must be {sign} {bound:g}, got {text}")
        return value

    parse.checked_number = True
    parse.__name__ = kind.__name__
    return parse


def probability() -> Callable[[str], float]:
    """A float in [0, 1]."""
    return number(float, min=0.0, max=1.0)


def unchecked_numeric_options(parser: argparse.ArgumentParser) -> list[str]:
    """Options (of the parser, its groups and sub-commands) parsed with a bare int or float type."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += [f"{name} {option}" for option in unchecked_numeric_options(sub)]
        elif action.type in (int, float):
            found.append("/".join(action.option_strings) or action.dest)
    return found


# -- inputs and progress --------------------------------------------------------------------------
def read_json(path: str | os.PathLike, what: str, hint: str = ""):
    """A JSON file the user handed us, or one UserError line saying what is wrong with it."""
    from data_tools.textinput import read_text  # textinput itself needs UserError from here

    text = read_text(path, what, hint=hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); fix or regenerate it") from None


def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", **kwargs) -> Iterable[T]:
    """A tqdm bar when stderr is a terminal (or FACENAR_PROGRESS=1), else the bare iterable."""
    wanted = os.environ.get("FACENAR_PROGRESS")
    show = sys.stderr.isatty() if wanted is None else wanted == "1"
    if not show:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, **kwargs)
