"""The errors users can cause and the faults of the machine, each with its exit code.

Exit codes: 0 success, 2 a problem the user can fix (bad option, bad or unwritable path, corrupt
input), 1 a fault of the machine (disk full, I/O error, out of memory), 130 interrupted.
"""
from __future__ import annotations

import errno
import os
import re

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
