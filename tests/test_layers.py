"""The repository's floors: every module imports, imports go down (runtime < data formats < application
< benchmarks; inside facenar, down its unit floors or within one wing), and no import circle exists
anywhere, not even inside one wing, so the architecture can be read from the folders."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the packages from the ground up: one may import itself and the packages before it
PACKAGES = ["facenar_runtime", "data_tools", "facenar", "benchmarks"]
# facenar's units, ground floor first; a unit may import itself and anything on a lower floor
FLOORS = [
    {"registry"},
    {"space", "dist", "schedule", "rundir", "config", "speed"},
    {"data", "checkpoint"},
    {"verify"},
    {"tasks"},
    {"search", "train"},
    {"arch", "export", "prepare_proxy", "evaluate", "modules"},
    {"commands"},
    {"__main__"},
]
FLOOR = {unit: level for level, units in enumerate(FLOORS) for unit in units}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every repository module named by an import anywhere in the file (also inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name for name in names if name in modules}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) - {name} for name, path in modules.items()}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "facenar" else None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_unit_has_a_floor_and_every_module_imports():
    modules = _modules()
    assert {_unit(m) for m in modules if _unit(m)} <= set(FLOOR), "place a new facenar module on a floor here"
    for name in modules:
        if not name.endswith("__main__"):
            importlib.import_module(name)


def test_packages_import_only_their_own_floor_or_below():
    wrong = [f"{name} -> {target}" for name, targets in _graph().items() for target in targets
             if PACKAGES.index(target.split(".")[0]) > PACKAGES.index(name.split(".")[0])]
    assert not wrong, wrong


def test_facenar_imports_go_down_or_stay_in_the_wing():
    wrong = []
    for name, targets in _graph().items():
        for target in targets:
            if _unit(name) is None or _unit(target) in (None, _unit(name)):
                continue
            if FLOOR[_unit(target)] >= FLOOR[_unit(name)]:
                wrong.append(f"{name} -> {target}")
    assert not wrong, wrong


def test_no_import_cycle_anywhere():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_runtime_and_the_data_formats_import_without_torch():
    names = sorted(m for m in _modules() if m.split(".")[0] in ("facenar_runtime", "data_tools"))
    code = f"import sys; import {', '.join(names)}; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_data_model_is_the_ground_floor():
    """The architecture model needs only its operators and the torch-free runtime."""
    modules = _modules()
    above = {m for m in _imports(modules["facenar.space.arch"], modules) if m.split(".")[0] != "facenar_runtime"}
    assert above <= {"facenar.space.ops"}
