"""MkDocs hook: the reference pages are generated from the code at build time, never copied.

- reference/commands.md: every command's argparse parser (options, defaults and each default's
  source, as --help prints them). Commands are discovered, not listed: any module of facenar/,
  data_tools/ or benchmarks/ with a main() that runs as `python -m` is one, so a new command
  appears without editing this file.
- reference/modules.md: the module map, from each module's docstring.
- benchmarks/RESULTS.md and benchmarks/evidence/**: the committed reports and their plots, and
  changelog.md from CHANGELOG.md, so the site shows the real files instead of copies that go stale.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # the `mkdocs` script does not put the checkout on the path; the parsers live there
    sys.path.insert(0, str(ROOT))
PACKAGES = ("facenar", "data_tools", "benchmarks")
# "(default 35 [paper]; demo: 2; cifar10-paper: 150)": the format of facenar.config.help_default
_TAIL = re.compile(r"\s*\(([^()]*)\)$")
_SOURCE = re.compile(r"^default (?P<value>.*?)(?: \[(?P<source>[\w ]+)\])?$")


def _has_main_guard(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.If) and "__main__" in ast.unparse(node.test) for node in tree.body)


def _defines_main(tree: ast.Module) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def discover_commands(root: Path = ROOT) -> dict[str, str]:
    """{module defining the parser: what a user types}, found from the source alone (no import).

    A module is a command when it defines main() and runs it under `if __name__ == "__main__"`,
    or when it is pkg/cli.py next to a pkg/__main__.py (then the user types `python -m pkg`).
    """
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            if path.name == "__main__.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if not _defines_main(tree):
                continue
            if _has_main_guard(tree):
                found[module] = f"python -m {module}"
            elif path.name == "cli.py" and (path.parent / "__main__.py").exists():
                found[module] = f"python -m {module.rsplit('.', 1)[0]}"
    return found


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser):
        self.parser = parser


def parser_of(module: str, argv: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """The parser a command's main(argv) builds, caught when main() parses (nothing runs)."""
    def capture(self, *args, **kwargs):
        raise _Captured(self)

    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = capture
    try:
        importlib.import_module(module).main(list(argv))
    except _Captured as caught:
        return caught.parser
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved
    raise RuntimeError(f"{module}.main([]) returned without parsing a command line")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _text(text: str) -> str:
    """Prose from a help text: `<identity>` is a placeholder, not an HTML tag."""
    return _cell(text).replace("<", "&lt;").replace(">", "&gt;")


def split_help(action: argparse.Action, parser: argparse.ArgumentParser) -> tuple[str, str, str, str]:
    """(description, default, its source, other presets' values) of one option."""
    text = action.help or ""
    if "%(" in text:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            text = parser._get_formatter()._expand_help(action)
    tail = _TAIL.search(text)
    if tail:
        parts = tail[1].split("; ")
        first = _SOURCE.match(parts[0])
        presets = parts[1:] if first else parts
        if (first or presets) and all(": " in part for part in presets):
            return (text[:tail.start()], first["value"] if first else "", first and first["source"] or "",
                    "; ".join(presets))
    default = action.default
    shown = "" if default in (None, argparse.SUPPRESS, False, "") or action.nargs == 0 else str(default)
    return text, shown, "", ""


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| option | description | default | source | other presets |", "|---|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        flags = ", ".join(action.option_strings) or action.dest
        if action.metavar or action.choices:
            flags += " " + (action.metavar or "{" + ",".join(map(str, action.choices)) + "}")
        description, default, source, presets = split_help(action, parser)
        rows.append(f"| {_cell(f'`{flags}`')} | {_text(description)} | {_cell(default and f'`{default}`')} | "
                    f"{_text(source)} | {_text(presets)} |")
    return rows


def subcommands(module: str) -> dict[str, argparse.ArgumentParser]:
    """A command's subcommands and their parsers: argparse subparsers, and the names in the module's
    SUBCOMMANDS, whose main([name, ...]) parses with a parser of its own (facenar.search's `derive`)."""
    for action in parser_of(module)._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {name: parser_of(module, (name,)) for name in getattr(importlib.import_module(module), "SUBCOMMANDS", ())}


def command_page(root: Path = ROOT) -> str:
    lines = ["# Command reference", "",
             "Generated from the code when the site is built: every command's own argparse parser, so this "
             "page cannot drift from `--help`. Defaults are marked by their source: **paper** the NAR paper, "
             "**ArcFace** the ArcFace paper, **ENAS** ENAS, **arcface_torch** insightface's training code, "
             "**ours** chosen here; *other presets* lists the values a preset (e.g. `demo`) sets instead.", ""]
    commands = sorted(discover_commands(root).items(), key=lambda item: (PACKAGES.index(item[0].split(".")[0]), item[1]))
    lines += ["| command | purpose |", "|---|---|"]
    for module, typed in commands:
        parser = parser_of(module)
        lines.append(f"| [`{typed}`](#{_anchor(typed)}) | {_text(parser.description or '')} |")
    for module, typed in commands:
        parser = parser_of(module)
        lines += ["", f"## {typed} {{ #{_anchor(typed)} }}", "", _text(parser.description or ""), "",
                  "```text", parser.format_usage().strip(), "```", ""]
        lines += _options_table(parser)
        for name, sub in subcommands(module).items():
            lines += ["", f"### {typed} {name}", "", _text(sub.description or ""), ""] + _options_table(sub)
        if parser.epilog:
            lines += ["", _text(parser.epilog)]
    return "\n".join(lines) + "\n"


def _anchor(typed: str) -> str:
    return typed.replace("python -m ", "").replace(".", "-").replace("_", "-")


def module_page(root: Path = ROOT) -> str:
    """The module map: one row per module, its docstring's first paragraph, grouped by package."""
    lines = ["# Module map", "",
             "Generated from the module docstrings when the site is built. `facenar/` is built in floors: "
             "a module imports only from its own wing or from floors below it (tests/test_layers.py), and "
             "`data_tools` imports without torch.", ""]
    for package in PACKAGES:
        for folder in sorted({p.parent for p in (root / package).rglob("*.py")}):
            rows = []
            for path in sorted(folder.glob("*.py")):
                doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
                summary = doc.split("\n\n")[0]
                if not summary and path.name == "__init__.py":
                    continue  # a bare package marker says nothing
                rows.append(f"| `{path.relative_to(root).as_posix()}` | {_text(summary)} |")
            lines += [f"## {folder.relative_to(root).as_posix()}/", "", "| module | what it is for |", "|---|---|"]
            lines += rows + [""]
    return "\n".join(lines)


def arch_example(root: Path = ROOT) -> str:
    """The paper's refined architecture as shipped, to show the arch.json format on a real file."""
    data = json.loads((root / "weights/archs/iresnet50_nar_pretrain_paper.json").read_text(encoding="utf-8"))
    return json.dumps(data, indent=2)


# ---- MkDocs events ------------------------------------------------------------------------------------

def _report_files() -> list[Path]:
    bench = ROOT / "benchmarks"
    return [*sorted(bench.glob("*.md")), *sorted((bench / "evidence").rglob("*.md")), *sorted((bench / "evidence").rglob("*.png")),
            *sorted(bench.glob("*.png"))]


def on_files(files, config):
    from mkdocs.structure.files import File

    generated = {"reference/commands.md": command_page(), "reference/modules.md": module_page(),
                 "changelog.md": (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")}
    for uri, content in generated.items():
        files.append(File.generated(config, uri, content=content))
    for path in _report_files():
        uri = path.relative_to(ROOT).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


_PLACEHOLDER = re.compile(r"\{\{ (value|hex):([\w.]+) \}\}")


def code_value(kind: str, dotted: str) -> str:
    """`{{ value:pkg.module.NAME }}` in a page becomes that constant, read from the code at build time."""
    module, name = dotted.rsplit(".", 1)
    value = getattr(importlib.import_module(module), name)
    if kind == "hex":
        return f"0x{value:08x}"
    if hasattr(value, "format") and hasattr(value, "size"):  # a struct.Struct
        return f"{value.format} ({value.size} bytes)"
    if isinstance(value, (dict, list, tuple, set, frozenset)):
        return ", ".join(f"`{'.'.join(item) if isinstance(item, tuple) else item}`" for item in value)
    return f"`{value}`"


def on_page_markdown(markdown, page, config, files):
    markdown = markdown.replace("{{ arch_example }}", arch_example())
    return _PLACEHOLDER.sub(lambda m: code_value(m[1], m[2]), markdown)
