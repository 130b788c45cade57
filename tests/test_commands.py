"""The `facenar` console script: every `python -m` command of the project is a subcommand, listed by --help."""
from __future__ import annotations

import ast
import re
import importlib
from pathlib import Path

import pytest

from facenar.commands import COMMANDS, load, main, python_module

ROOT = Path(__file__).resolve().parents[1]


def _python_m_modules() -> set[str]:
    """Modules a user runs with `python -m`: a __main__.py (its package) or a `__main__` guard."""
    found = set()
    for package in ("facenar", "data_tools", "benchmarks"):
        for path in (ROOT / package).rglob("*.py"):
            dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            if path.name == "__main__.py":
                found.add(dotted.rsplit(".", 1)[0])
            elif '__name__ == "__main__"' in path.read_text():
                found.add(dotted)
    return found - {"facenar"}  # `python -m facenar` is the console script itself


def test_every_python_m_command_is_a_subcommand():
    assert _python_m_modules() == {python_module(name) for name in COMMANDS}


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert re.search(rf"^    {re.escape(name)}\b", out, re.M), name


@pytest.mark.parametrize("name", COMMANDS.names())
def test_every_command_resolves_to_a_main(name):
    assert callable(load(name))
    assert ast.get_docstring(ast.parse(Path(importlib.util.find_spec(python_module(name).replace(
        ".__main__", "")).origin).read_text())) is not None


def test_a_subcommand_runs_its_command_behind_the_error_boundary(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["arch", "--help"])
    assert exit_.value.code == 0
    assert "python -m facenar.arch" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_:
        main(["arch", "stats", "/nonexistent/arch.json"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["serach"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
