"""The package's layers, lowest first: a module imports only from its own layer or lower ones (lazy imports
inside functions included), and no modules import each other in a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "promptclf"
# One package per layer; the facade (Classifier, the cascade, the scikit-learn estimator) and the CLI are the
# top-level modules. promptclf/__init__.py re-exports the facade and is left out.
LAYERS = ("core", "cache", "task", "methods", "providers", "facade", "workflows", "cli")
FACADE = {"classifier", "cascade", "sklearn", "pipeline"}


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def layer(module: str) -> int:
    first = module.split(".")[1]
    if first in LAYERS:
        return LAYERS.index(first)
    return LAYERS.index("facade" if first in FACADE else "cli")  # cli, integrations


def runtime_nodes(tree: ast.AST):
    """Every node, except under `if TYPE_CHECKING:` (imports for annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            continue
        yield node
        yield from runtime_nodes(node)


def imports_within_package() -> dict[str, set[str]]:
    modules = {module_name(p) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        found = set()
        for node in runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {m for m in [node.module, *(f"{node.module}.{a.name}" for a in node.names)] if m in modules}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name in modules}
        graph[module_name(path)] = found - {module_name(path)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt, path + [nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer(m)]}) imports {d} ({LAYERS[layer(d)]})"
                  for m, deps in graph.items() for d in deps if layer(d) > layer(m))


def test_the_checks_find_a_cycle_and_an_upward_import():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert upward_imports({"promptclf.core.labels": {"promptclf.classifier"}}) == [
        "promptclf.core.labels (core) imports promptclf.classifier (facade)"]


def test_no_import_cycle_between_promptclf_modules():
    graph = imports_within_package()
    assert graph["promptclf.classifier"]  # the parse found the imports
    assert find_cycle(graph) is None


def test_every_layer_is_a_package_and_nothing_else_is_left_flat():
    assert all((PACKAGE / name / "__init__.py").exists() for name in LAYERS if name not in ("facade", "cli"))
    assert {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"} == FACADE | {"cli"}


def test_no_module_imports_from_a_higher_layer():
    assert upward_imports(imports_within_package()) == []
