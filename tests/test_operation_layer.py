"""The shape of the SDK's operation layer: no import cycles, no reaching into other modules' privates."""
from __future__ import annotations

import ast
from pathlib import Path

import durable_sync

PKG = Path(durable_sync.__file__).resolve().parent
OPERATIONS = PKG / "operations"


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# The layers above the SDK (engine, read model, CLI, testing toolkit) have their own import rules
# (tests/test_package_imports.py); here: the SDK that runs inside a Lambda function.
_OTHER_LAYERS = {"local", "inspection", "cli", "testing"}


def _sdk_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PKG.rglob("*.py")
            if not _OTHER_LAYERS & {p.relative_to(PKG).parts[0], p.relative_to(PKG).with_suffix("").parts[0]}}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``path`` imports, lazily (inside functions) or not."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    deps: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = {f"{target}.{a.name}" for a in node.names} & known
            if len(subs) < len(node.names) and target in known:
                deps.add(target)  # names taken from the module itself, not submodules
            deps |= subs
        elif isinstance(node, ast.Import):
            deps |= {a.name for a in node.names} & known
    deps.discard(name)
    return deps


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_sdk_has_no_import_cycles():
    modules = _sdk_modules()
    known = set(modules)
    graph = {name: _imports(path, name, known) for name, path in modules.items()}
    assert _cycles(graph) == []


def test_the_operation_modules_do_not_import_the_facade():
    modules = _sdk_modules()
    known = set(modules)
    for path in OPERATIONS.glob("*.py"):
        name = _module_name(path)
        deps = _imports(path, name, known)
        assert "durable_sync.context" not in deps, name
        assert "durable_sync.handler" not in deps, name


def _own_private_names(tree: ast.AST) -> set[str]:
    """Private attribute names a module defines: ``self._x = ...``, ``__slots__``, methods, classes."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__slots__"
                                                  for t in node.targets):
            names |= {elt.value for elt in getattr(node.value, "elts", []) if isinstance(elt, ast.Constant)}
    return names


def test_operation_modules_use_only_public_members_of_other_modules():
    offences = []
    for path in sorted(OPERATIONS.glob("*.py")):
        tree = ast.parse(path.read_text())
        own = _own_private_names(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and node.attr not in own):
                offences.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert offences == []
