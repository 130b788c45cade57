"""The command-line boundary: one `error:` line instead of a traceback (exit codes in
facenar_runtime.errors), checked numeric options, progress bars only on a TTY."""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
from typing import Callable, Iterable, Sequence, TypeVar

from facenar_runtime.errors import UserError, is_torch_write_failure, os_error, torch_write_error, worker_message

T = TypeVar("T")


def _fail(message: str, code: int) -> None:
    # one line whatever the message quotes (tarfile's errors list every method on its own line); a
    # non-UTF-8 path arrives as surrogate escapes, which no stream can encode: show them as \udcXX
    line = re.sub(r"\s*\n\s*", " ", message.strip())
    print(f"error: {line}".encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)
    sys.exit(code)


def run_cli(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """Run a CLI entry point behind the error boundary (exit codes: facenar_runtime.errors)."""
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

    An upper bound (`max` or `lt`, usually one of facenar_runtime.limits with its reason) is required:
    an unbounded size or seed ends in a numpy/torch traceback or an allocation that never returns.
    Declaring the range with the option (not in the code that uses it) is what lets the test
    `unchecked_numeric_options` prove that no numeric option of a command is left unchecked.
    """
    if max is None and lt is None:
        raise TypeError("number() needs an upper bound (max= or lt=); see facenar_runtime.limits")
    bounds = [(min, ">=", lambda v, b: v >= b), (gt, ">", lambda v, b: v > b),
              (max, "<=", lambda v, b: v <= b), (lt, "<", lambda v, b: v < b)]
    bounds = [(bound, sign, test) for bound, sign, test in bounds if bound is not None]
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:  # also an integer over Python's 4300-digit conversion limit
            raise argparse.ArgumentTypeError(f"expected {noun}, got {text!r}"[:200]) from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        for bound, sign, test in bounds:
            if not test(value, bound):
                shown = bound if isinstance(bound, int) else f"{bound:g}"  # 2147483647, not 2.14748e+09
                raise argparse.ArgumentTypeError(f"must be {sign} {shown}, got {text}"[:200])
        return value

    parse.checked_number = True
    parse.__name__ = kind.__name__
    return parse


def probability() -> Callable[[str], float]:
    """A float in [0, 1]."""
    return number(float, min=0.0, max=1.0)


def checked_value(parse: Callable[[str], int | float], value, name: str) -> int | float:
    """A number from a JSON file (config, architecture) through its option's `number(...)` range,
    or one UserError naming the setting: the file gets exactly the checks the command line gets."""
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float)):  # e.g. "many" in a config.json
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}"[:200])
        return parse(str(value))
    except argparse.ArgumentTypeError as exc:
        raise UserError(f"{name}: {exc}") from None


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


# -- progress --------------------------------------------------------------------------
def progress(iterable: Iterable[T], total: int | None = None, desc: str = "", **kwargs) -> Iterable[T]:
    """A tqdm bar when stderr is a terminal (or FACENAR_PROGRESS=1), else the bare iterable."""
    wanted = os.environ.get("FACENAR_PROGRESS")
    show = sys.stderr.isatty() if wanted is None else wanted == "1"
    if not show:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, **kwargs)
