"""The module map, generated from the code: every module of the repository with its docstring's first sentence(s).

The docs render it (`facenar modules --markdown`), so a module added, moved or removed shows up
without anyone editing a hand-kept list. Files are parsed, not imported: no torch, no side effects.
"""
from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("facenar_runtime", "data_tools", "facenar", "benchmarks")  # the floors, ground first


def module_map(root: Path = ROOT) -> list[tuple[str, str]]:
    """(dotted module name, the first paragraph of its docstring on one line, or "") for every module, package by package."""
    rows = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            doc = ast.get_docstring(ast.parse(path.read_text())) or ""
            rows.append((name, " ".join(doc.strip().split("\n\n")[0].split())))
    return rows


def format_map(rows: list[tuple[str, str]], markdown: bool = False) -> str:
    if markdown:
        cells = [(name, doc.replace("|", r"\|")) for name, doc in rows]
        return "\n".join(["| module | what it is |", "|---|---|", *(f"| `{name}` | {doc} |" for name, doc in cells)])
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {doc}" for name, doc in rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m facenar.modules", description=__doc__.splitlines()[0])
    p.add_argument("--markdown", action="store_true", help="a Markdown table (what the docs render)")
    args = p.parse_args(argv)
    print(format_map(module_map(), args.markdown))
    return 0


if __name__ == "__main__":
    from facenar_runtime.cli import run_cli

    run_cli(main)
