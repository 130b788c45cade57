"""Bounded reading of text files users hand us (pairs, landmarks, JSON, property, .idx).

A wrong path such as /dev/urandom or a multi-GB binary must end in one line within a second,
not after the reader has filled the machine's memory: text is read in chunks, decoded as UTF-8
as it arrives, and refused as soon as it exceeds its size or line-length limit.
"""
from __future__ import annotations

import codecs
import json
import os

from facenar_runtime.errors import UserError

MiB = 1 << 20
DEFAULT_MAX_BYTES = 256 * MiB
DEFAULT_MAX_LINE = 64 * 1024
_CHUNK = MiB


def _size(count: int) -> str:
    return f"{count / MiB:g} MiB" if count >= MiB else f"{count} bytes"


def read_text(path: str | os.PathLike, what: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
              max_line: int = DEFAULT_MAX_LINE, hint: str = "") -> str:
    """The UTF-8 text of `path`, or one UserError naming the file and the limit it broke.

    `what` names the input in messages ("pairs file"); `hint` is appended to the not-found message.
    """
    name = os.fsdecode(path)
    if os.path.isdir(path):
        raise UserError(f"{what} {name} is a folder, expected a text file")
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{what} {name} does not exist" + (f"; {hint}" if hint else "")) from None
    except OSError as exc:
        raise UserError(f"cannot read {what} {name}: {exc.strerror or exc}") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts, total, line = [], 0, 0
    with handle:
        while True:
            try:
                chunk = handle.read(_CHUNK)
            except OSError as exc:
                raise UserError(f"cannot read {what} {name}: {exc.strerror or exc}") from None
            total += len(chunk)
            if total > max_bytes:
                raise UserError(f"{what} {name} is larger than {_size(max_bytes)}; is it the right file?")
            try:
                text = decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                raise UserError(f"{what} {name} is not UTF-8 text (byte {total - len(chunk) + exc.start}); "
                                "is it the right file?") from None
            if "\0" in text:
                raise UserError(f"{what} {name} contains NUL bytes, so it is not a text file")
            line = _longest_line(text, line, max_line, what, name)
            parts.append(text)
            if not chunk:
                return "".join(parts)


def _longest_line(text: str, carried: int, max_line: int, what: str, name: str) -> int:
    """Length of the unfinished last line after `text`; raises once any line exceeds `max_line`."""
    pieces = text.split("\n")
    lengths = [carried + len(pieces[0]), *map(len, pieces[1:])]
    if max(lengths) > max_line:
        raise UserError(f"{what} {name} has a line longer than {_size(max_line)}; is it the right file?")
    return lengths[-1]


def read_json(path: str | os.PathLike, what: str, hint: str = ""):
    """A JSON file the user handed us, or one UserError line saying what is wrong with it."""
    text = read_text(path, what, hint=hint)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc}); fix or regenerate it") from None
    except ValueError as exc:  # an integer over Python's 4300-digit conversion limit
        raise UserError(f"{path}: {exc}; no facenar file holds such a number, fix or regenerate it") from None
    except RecursionError:
        raise UserError(f"{path} nests arrays or objects too deeply to read; no facenar file does, "
                        "fix or regenerate it") from None
