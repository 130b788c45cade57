"""The package's floors: every facenar module imports, and imports only from its own wing or the
floors below it (issue 12), so the architecture can be read from the folders and no circle returns."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "facenar"
# ground floor first; a unit may import itself and anything on a lower floor, nothing else
FLOORS = [
    {"space", "dist", "schedule", "rundir", "config", "registry"},
    {"data", "checkpoint"},
    {"verify"},
    {"tasks"},
    {"search", "train"},
    {"arch", "export", "prepare_proxy", "evaluate"},
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path) -> set[str]:
    """Every facenar module named by an import anywhere in the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("facenar"):
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names if alias.name.startswith("facenar"))
    return names


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_unit_has_a_floor_and_every_module_imports():
    modules = _modules()
    assert {_unit(m) for m in modules if _unit(m)} <= set(FLOOR), "place a new module on a floor here"
    for name in modules:
        if not name.endswith("__main__"):
            importlib.import_module(name)


def test_imports_go_down_or_stay_in_the_wing():
    modules = _modules()
    wrong = []
    for name, path in modules.items():
        for target in _imports(path):
            if target not in modules or _unit(target) in (None, _unit(name)):
                continue
            if FLOOR[_unit(target)] >= FLOOR[_unit(name)]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_the_data_model_is_the_ground_floor():
    assert {t for t in _imports(PACKAGE / "space" / "arch.py") if t in _modules()} <= {"facenar.space.ops"}
