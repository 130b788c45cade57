"""Bounded reading of files users hand us (pairs, landmarks, JSON, CSV, property, .idx; .bin, CIFAR).

A wrong path such as /dev/urandom or a multi-GB binary must end in one line within a second,
not after the reader has filled the machine's memory: text is read in chunks, decoded as UTF-8
as it arrives, and refused as soon as it exceeds its size or line-length limit. A binary file
read whole must be a regular file whose size is within what its format can hold, checked
before the first byte is read (a link to /dev/zero has no end).
"""
from __future__ import annotations

import codecs
import json
import csv
import io
import os
import stat

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


def read_bytes(path: str | os.PathLike, what: str, max_bytes: int) -> bytes:
    """The whole of a regular file of at most `max_bytes`, or one UserError naming it and the limit."""
    name = os.fsdecode(path)
    try:  # O_NONBLOCK: opening a FIFO must not wait for a writer; regular files ignore it
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UserError(f"cannot read {what} {name}: {exc.strerror or exc}") from None
    info = os.fstat(fd)
    problem = ("is a folder, expected a file" if stat.S_ISDIR(info.st_mode) else
               "is not a regular file (a device, FIFO or socket); is it the right file?"
               if not stat.S_ISREG(info.st_mode) else
               f"is {_size(info.st_size)}, more than a {what} can hold ({_size(max_bytes)}); is it the right file?"
               if info.st_size > max_bytes else None)
    if problem:
        os.close(fd)
        raise UserError(f"{what} {name} {problem}")
    with open(fd, "rb") as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise UserError(f"cannot read {name}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:  # it grew while we read
        raise UserError(f"{what} {name} is larger than {_size(max_bytes)}; is it the right file?")
    return data


def read_csv(path: str | os.PathLike, what: str, hint: str = "", **limits) -> list[dict]:
    """The rows of a CSV file through read_text; a damaged table (a field over the csv module's
    limit, a stray quote) is one line naming it, with `hint` saying what to do."""
    text = read_text(path, what, **limits)
    try:
        return list(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise UserError(f"{what} {os.fsdecode(path)} is damaged ({exc})" + (f"; {hint}" if hint else "")) from None


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
