"""The runtime's CLI boundary: checked numeric options (on every registered command), the error boundary,
bounded text input."""
from __future__ import annotations

import argparse
import errno
import importlib

import pytest

from facenar_runtime.cli import number, probability, run_cli, unchecked_numeric_options
from facenar_runtime.errors import EnvironmentFault, UserError, worker_message
from facenar.commands import COMMANDS
from facenar_runtime.textinput import read_json, read_text

# Every command line of the project: the modules of the `facenar` command registry (a new command is covered)
CLI_MODULES = [COMMANDS.get(name).split(":")[0] for name in COMMANDS]


class _Captured(Exception):
    def __init__(self, parser):
        self.parser = parser


def parser_of(module_name: str, monkeypatch) -> argparse.ArgumentParser:
    """The parser a CLI's main() builds, captured at parse time (no CLI needs a build_parser for this)."""
    def capture(self, *args, **kwargs):
        raise _Captured(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    with pytest.raises(_Captured) as caught:
        importlib.import_module(module_name).main([])
    return caught.value.parser


@pytest.mark.parametrize("module_name", CLI_MODULES)
def test_every_numeric_option_is_declared_with_a_range(module_name, monkeypatch):
    assert unchecked_numeric_options(parser_of(module_name, monkeypatch)) == []


def numeric_actions(parser: argparse.ArgumentParser, prefix: str = ""):
    """(name, action) of every option parsed by a number(...) type, sub-commands included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from numeric_actions(sub, f"{prefix}{name} ")
        elif getattr(action.type, "checked_number", False):
            yield prefix + "/".join(action.option_strings), action


@pytest.mark.parametrize("module_name", CLI_MODULES)
def test_every_numeric_option_refuses_a_value_past_its_maximum(module_name, monkeypatch):
    """Issue 19 item 6: --seed 2**64, --width 1e300, --input-size 99999999999 are usage errors, not tracebacks."""
    for name, action in numeric_actions(parser_of(module_name, monkeypatch)):
        for text in ("1e300", str(2**64), "9" * 5000):
            with pytest.raises(argparse.ArgumentTypeError, match="must be <|expected an integer|expected a finite number"):
                action.type(text)


def test_number_needs_an_upper_bound():
    with pytest.raises(TypeError, match="upper bound"):
        number(int, min=0)
    assert number(float, lt=0)("-1") == -1.0


def test_unchecked_numeric_options_finds_bare_types_in_groups_and_subcommands():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ok", type=number(int, min=0, max=9))
    parser.add_argument_group("g").add_argument("--lr", type=float)
    sub = parser.add_subparsers().add_parser("run")
    sub.add_argument("--steps", type=int)
    assert unchecked_numeric_options(parser) == ["--lr", "run --steps"]


@pytest.mark.parametrize("text, kind, bounds, message", [
    ("-1", int, {"min": 0}, "must be >= 0, got -1"),
    ("0", float, {"gt": 0}, "must be > 0, got 0"),
    ("nan", float, {}, "expected a finite number, got 'nan'"),
    ("inf", float, {"min": 0}, "expected a finite number, got 'inf'"),
    ("1.5", int, {}, "expected an integer, got '1.5'"),
    ("x", float, {}, "expected a number, got 'x'"),
    ("11", int, {"max": 10}, "must be <= 10, got 11"),
])
def test_number_rejects_with_one_usage_line(text, kind, bounds, message, capsys):
    parser = argparse.ArgumentParser(prog="p")
    parser.add_argument("--value", type=number(kind, **{"max": 1e9, **bounds}))
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["--value", text])
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"p: error: argument --value: {message}"


def test_number_and_probability_accept_valid_values():
    assert number(int, min=0, max=1)("0") == 0 and number(float, gt=0, max=1)("1e-4") == 1e-4
    assert probability()("0.5") == 0.5
    with pytest.raises(argparse.ArgumentTypeError):
        probability()("1.5")


def _exit(main, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(main, [])
    return info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("error, code, text", [
    (PermissionError(errno.EACCES, "Permission denied", "/x/out.bin"), 2, "error: /x/out.bin: Permission denied\n"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/f"), 2, "error: /ro/f: Read-only file system\n"),
    (OSError(errno.ENOSPC, "No space left on device", "/full/f"), 1, "error: /full/f: No space left on device\n"),
    (OSError(errno.EIO, "Input/output error"), 1, "error: Input/output error\n"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/a/file/x"), 2, "error: /a/file/x: Not a directory\n"),
    (OSError(errno.ENAMETOOLONG, "File name too long", b"/t/\xff" + b"a" * 300), 2, "File name too long"),
    (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"), 1,
     "error: cannot write a torch file: write failed (disk full or I/O error)\n"),
    (EnvironmentFault("disk gone"), 1, "error: disk gone\n"),
])
def test_error_boundary_turns_os_errors_into_one_line(error, code, text, capsys):
    def main(argv):
        raise error

    got_code, err = _exit(main, capsys)
    assert got_code == code and text in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_message_quoting_a_multi_line_error_still_prints_one_line(tmp_path, capsys):
    import tarfile

    junk = tmp_path / "cifar-10-python.tar.gz"
    junk.write_bytes(bytes(range(256)) * 12)
    with pytest.raises(tarfile.TarError) as raw:  # tarfile lists every method it tried, one per line
        tarfile.open(junk, "r:*")
    assert "\n" in str(raw.value)

    def main(argv):
        raise UserError(f"{junk} is not a CIFAR tar.gz ({raw.value});  download it again")

    code, err = _exit(main, capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {junk} is not a CIFAR tar.gz (")
    assert "method tar" in err and ";  download" in err  # folded at line breaks only


def test_other_runtime_errors_are_bugs_and_keep_their_traceback():
    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(lambda argv: (_ for _ in ()).throw(RuntimeError("a bug")), [])


class _BadDataset:
    """A dataset whose item 1 is a corrupt file, as a real loader would report it."""

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == 1:
            raise UserError("/data/train.rec key 2: not a decodable image")
        return index


def test_dataloader_worker_error_prints_the_original_line(capsys):
    torch_data = pytest.importorskip("torch.utils.data")

    def main(argv):
        for _ in torch_data.DataLoader(_BadDataset(), batch_size=1, num_workers=1):
            pass

    code, err = _exit(main, capsys)
    assert (code, err) == (2, "error: /data/train.rec key 2: not a decodable image\n")


def test_worker_message_only_unwraps_torch_worker_text():
    assert worker_message("plain message") is None
    text = ("Caught OSError in DataLoader worker process 3.\nOriginal Traceback (most recent call last):\n"
            '  File "x.py", line 1, in f\n    g()\nFileNotFoundError: [Errno 2] No such file: \'a.jpg\'\n')
    assert worker_message(text) == "[Errno 2] No such file: 'a.jpg'"


# -- bounded text input (item 14) -------------------------------------------------------------------
def test_random_bytes_are_refused_quickly():
    with pytest.raises(UserError, match=r"pairs file /dev/urandom is not UTF-8 text"):
        read_text("/dev/urandom", "pairs file")


@pytest.mark.parametrize("content, limits, message", [
    (b"a" * 2000, {"max_bytes": 1000}, "is larger than 1000 bytes"),
    (b"x\n" + b"b" * 200 + b"\n", {"max_line": 100}, "has a line longer than 100 bytes"),
    (b"ok\x00no", {}, "contains NUL bytes"),
])
def test_text_limits(tmp_path, content, limits, message):
    path = tmp_path / "in.txt"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        read_text(path, "landmarks file", **limits)


def test_long_line_split_across_chunks_is_still_caught(tmp_path, monkeypatch):
    monkeypatch.setattr("facenar_runtime.textinput._CHUNK", 16)
    path = tmp_path / "in.txt"
    path.write_bytes(b"short\n" + b"c" * 50)
    with pytest.raises(UserError, match="line longer than 40 bytes"):
        read_text(path, "x", max_line=40)
    assert read_text(path, "x", max_line=60) == "short\n" + "c" * 50


def test_read_json_is_bounded_and_names_the_file(tmp_path):
    path = tmp_path / "arch.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(UserError, match=r"arch JSON .*arch.json is not UTF-8 text"):
        read_json(path, "arch JSON")
    path.write_text('{"a": 1}')
    assert read_json(path, "arch JSON") == {"a": 1}
    with pytest.raises(UserError, match="does not exist; make one"):
        read_json(tmp_path / "missing.json", "arch JSON", hint="make one")
