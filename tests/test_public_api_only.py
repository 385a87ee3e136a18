"""The CLI, the HTTP façade, the testing toolkit and the read model of an execution use only the engine's
public API: none of them reads a private attribute (a name with a leading underscore) of an engine.

The rule, checked on the source: in those packages, an attribute whose name starts with ``_`` (dunders
aside) is only ever read off ``self`` / ``cls``, or off another object of the same module, and then only
under a name the module itself defines (a leading underscore is private to the module that defines it)
— never under a name that is private to ``LocalEngine``. That holds whatever the variable holding the
engine is called, and covers ``getattr(obj, "_name")`` too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from durable_sync.local import LocalEngine

PACKAGE = Path(__file__).resolve().parent.parent / "durable_sync"
#: The layers on top of the engine (a console package is scanned too once it exists).
LAYERS = ("cli", "local/http", "testing", "inspection", "console", "views.py")
_ACCESSORS = ("getattr", "hasattr", "setattr", "delattr")


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _engine_private_names() -> set[str]:
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        names = set(dir(LocalEngine)) | set(vars(engine))
    return {name for name in names if _private(name)}


ENGINE_PRIVATE = _engine_private_names()


def _defined_here(tree: ast.Module) -> set[str]:
    """Private names the module defines: its classes' methods and class attributes, ``self._x = ...``."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    names.add(item.name)
                elif isinstance(item, (ast.Assign, ast.AnnAssign)):
                    targets = item.targets if isinstance(item, ast.Assign) else [item.target]
                    names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and \
                isinstance(node.value, ast.Name) and node.value.id == "self":
            names.add(node.attr)
    return {name for name in names if _private(name)}


def private_accesses(source: str) -> list[str]:
    """``line: expression`` of every read of a private attribute the rule above forbids in ``source``."""
    tree = ast.parse(source)
    own = _defined_here(tree) - ENGINE_PRIVATE
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            holder, name = node.value, node.attr
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _ACCESSORS \
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) \
                and isinstance(node.args[1].value, str) and _private(node.args[1].value):
            holder, name = node.args[0], node.args[1].value
        else:
            continue
        if isinstance(holder, ast.Name) and holder.id in ("self", "cls") or name in own:
            continue
        found.append(f"{node.lineno}: {ast.unparse(node)}")
    return found


def _layer_files() -> list[Path]:
    files: list[Path] = []
    for layer in LAYERS:
        path = PACKAGE / layer
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.exists() else []
    return files


def test_the_layers_were_found():
    names = {str(p.relative_to(PACKAGE)) for p in _layer_files()}
    assert {"cli/serve.py", "local/http/api.py", "testing/runner.py", "inspection/model.py"} <= names
    assert {"_lock", "_executions", "_store", "_wake"} <= ENGINE_PRIVATE


@pytest.mark.parametrize("path", _layer_files(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_reads_no_private_attribute_of_an_engine(path):
    assert private_accesses(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("source", [
    "def f(engine):\n    return engine._executions",
    "def f(runner):\n    return runner.engine._store.commit",
    "class R:\n    def f(self):\n        return self.engine._lock",
    "def f(eng):\n    return getattr(eng, '_functions')",
    "class Api:\n    def __init__(self, engine):\n        self._functions = {}\n        engine._functions.clear()",
    "def f(server):\n    return server.api._drive()",
])
def test_the_rule_catches_private_reads(source):
    assert len(private_accesses(source)) == 1


@pytest.mark.parametrize("source", [
    "class A:\n    def f(self):\n        return self._x",
    "class P:\n    def _prefix(self):\n        pass\n\ndef f(printer: P):\n    return printer._prefix()",
    "def f(engine):\n    return engine.snapshot(engine.__class__.__name__)",
])
def test_the_rule_allows_what_is_private_to_the_module_itself(source):
    assert private_accesses(source) == []
