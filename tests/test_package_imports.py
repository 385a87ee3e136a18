"""The package's import graph: production code never imports the testing toolkit, and the CLI, the HTTP
façade, the read model of an execution and the testing toolkit import each other in one direction only.

Imports are read from the source (every ``import`` statement, also those inside functions), so a
lazy import counts as much as one at the top of a module.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "durable_sync"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of the durable_sync modules ``path`` imports."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import views`
    return {m for m in found if m == "durable_sync" or m.startswith("durable_sync.")}


MODULES = {_module_name(p): _imports(p) for p in PACKAGE.rglob("*.py")}

# the parts the issue names, each one node; everything else is grouped by its first level
GROUPS = ("durable_sync.cli", "durable_sync.local.http", "durable_sync.inspection", "durable_sync.views",
          "durable_sync.testing", "durable_sync.console")


def _group(module: str) -> str:
    for group in GROUPS:
        if module == group or module.startswith(group + "."):
            return group
    return "durable_sync.local" if module.startswith("durable_sync.local") else "durable_sync (sdk)"


def test_the_graph_was_read():
    assert "durable_sync.inspection.model" in MODULES and "durable_sync.testing.results" in MODULES
    assert "durable_sync.inspection.model" in MODULES["durable_sync.testing.results"]


def test_no_production_module_imports_the_testing_toolkit():
    offenders = {module: sorted(m for m in imported if _group(m) == "durable_sync.testing")
                 for module, imported in MODULES.items() if _group(module) != "durable_sync.testing"}
    assert {m: i for m, i in offenders.items() if i} == {}


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, imported in MODULES.items():
        source = _group(module)
        for target in imported:
            if _group(target) != source and target in MODULES:
                edges.setdefault(source, set()).add(_group(target))
    return edges


@pytest.mark.parametrize("group", GROUPS)
def test_no_import_cycle_through(group):
    edges = _edges()

    def reaches(start: str, goal: str) -> list[str] | None:
        stack, seen = [(start, [start])], {start}
        while stack:
            node, path = stack.pop()
            for nxt in sorted(edges.get(node, ())):
                if nxt == goal:
                    return path + [nxt]
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
        return None

    cycle = reaches(group, group)
    assert cycle is None, " -> ".join(cycle)


def test_the_read_model_needs_no_engine_and_no_pytest():
    for path in (PACKAGE / "inspection").glob("*.py"):
        module = _module_name(path)
        assert not {m for m in MODULES[module] if _group(m) in ("durable_sync.local", "durable_sync.local.http",
                                                                "durable_sync.cli")}, module
        tree = ast.parse(path.read_text(encoding="utf-8"))
        third_party = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        third_party |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level}
        assert "pytest" not in third_party, module


def test_no_import_cycle_between_modules_of_the_read_model():
    modules = {m: {i for i in imported if i.startswith("durable_sync.inspection.")}
               for m, imported in MODULES.items() if m.startswith("durable_sync.inspection.")}
    for module, imported in modules.items():
        for other in imported:
            assert module not in modules.get(other, set()), f"{module} <-> {other}"
