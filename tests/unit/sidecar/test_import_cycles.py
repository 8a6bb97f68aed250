"""No import circle inside rescore_sidecar.sidecar: every module's imports, those inside functions
included (a lazy import only hides a circle), form a graph without cycles. A package's __init__
counts as imported by every module outside it that imports one of its submodules, as Python runs
it first (its own submodules, which it may re-export, do not count)."""
from __future__ import annotations

import ast
import pathlib

import rescore_sidecar.sidecar as sidecar_package

PACKAGE = "rescore_sidecar.sidecar"
ROOT = pathlib.Path(sidecar_package.__file__).parent


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from a.b import c`: the module a.b.c when there is one, else a name from a.b
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules
                           else node.module for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            graph[name].update(target for target in targets if target in modules and target != name)
    for name in list(graph):  # importing a.b.c from outside a.b runs a.b's __init__ first
        for target in list(graph[name]):
            package = target.rpartition(".")[0]
            while package.startswith(PACKAGE + ".") and package in modules:
                if name != package and not name.startswith(package + "."):
                    graph[name].add(package)
                package = package.rpartition(".")[0]
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_walk_sees_the_imports():
    graph = _graph()
    assert f"{PACKAGE}.backends.base" in graph[f"{PACKAGE}.backends.loader"]
    assert f"{PACKAGE}.core.tokenization" in graph[f"{PACKAGE}.app"]  # a function-level import counts too
    assert f"{PACKAGE}.backends" in graph[f"{PACKAGE}.core.calibration"]  # backends/__init__ runs first


def test_a_cycle_is_found():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_the_sidecar():
    cycle = _cycle(_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)
