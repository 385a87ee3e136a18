"""Handler references (durable_sync.local.handlers): one syntax, one loader for the CLI, the engine and isolation."""
from __future__ import annotations

import textwrap

import pytest

import durable_sync as ds
from durable_sync.local import LocalEngine
from durable_sync.local import handlers
from durable_sync.local.handlers import HandlerLoadError


@ds.durable_handler
def module_level(event, ctx: ds.DurableContext):
    return ctx.step(lambda _: event)


def test_module_reference_round_trips():
    ref = handlers.reference(module_level)
    assert ref == f"{__name__}:module_level"
    assert handlers.load(ref) is module_level

    def inner(event, ctx):
        return None

    assert handlers.reference(inner) is None


@pytest.mark.parametrize("spec, target, attr", [
    ("orders.py", "orders.py", "handler"),
    ("dir/orders.py:main", "dir/orders.py", "main"),
    ("pkg.mod:Class.method", "pkg.mod", "Class.method"),
    ("C:\\work\\orders.py", "C:\\work\\orders.py", "handler"),
    ("C:\\work\\orders.py:main", "C:\\work\\orders.py", "main"),
])
def test_split_reference(spec, target, attr):
    assert handlers.split_reference(spec) == (target, attr)


def test_file_reference_loads_and_remembers_its_absolute_path(tmp_path):
    path = tmp_path / "shop_flow.py"
    path.write_text(textwrap.dedent("""
        import durable_sync as ds

        @ds.durable_handler
        def handler(event, ctx):
            return ctx.step(lambda _: {"got": event})

        @ds.durable_handler
        def refund(event, ctx):
            return "refunded"

        FUNCTIONS = {"refund": refund}
    """))
    handler = handlers.load_durable(str(path))
    assert handler.__durable_ref__ == f"{path}:handler"
    assert handler.__durable_function_name__ == "shop_flow"
    assert handlers.load_durable(f"{path}:refund").__durable_function_name__ == "shop_flow-refund"
    table = handlers.module_functions(handler, str(path))
    assert set(table) == {"refund"} and table["refund"].__durable_ref__ == f"{path}:refund"
    with LocalEngine(db=":memory:", skip_time=True) as engine:
        assert engine.run(handler, {"n": 1}).result == {"got": {"n": 1}}


@pytest.mark.parametrize("spec, message", [
    ("/no/such/file.py:handler", "does not exist"),
    ("no_such_module_anywhere:handler", "cannot import module"),
    ("durable_sync:no_such_attr", "has no attribute"),
    ("/tmp/orders.rb:handler", "not of a kind the engine runs"),
    ("", "a handler reference is"),
])
def test_bad_references_raise_one_typed_error(spec, message):
    with pytest.raises(HandlerLoadError, match=message):
        handlers.load(spec)


def test_a_broken_file_and_a_missing_handler_are_reported(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("raise SystemExit(3)\n")
    with pytest.raises(HandlerLoadError, match="could not import .*SystemExit"):
        handlers.load(str(broken))
    plain = tmp_path / "plain.py"
    plain.write_text("def handler(event, context):\n    return event\n\nimport durable_sync as ds\n"
                     "@ds.durable_handler\ndef flow(event, ctx):\n    return 1\n")
    assert handlers.load(str(plain))({"a": 1}, None) == {"a": 1}  # any Lambda handler loads
    assert handlers.load_durable(str(plain)).__durable_function_name__ == "plain"  # the engine hosts any handler
    with pytest.raises(HandlerLoadError, match="no callable 'nope'; durable handlers in it: flow"):
        handlers.load(f"{plain}:nope")
