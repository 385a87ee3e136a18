"""What ``ctx.map`` / ``ctx.parallel`` accept, checked when they are called (durable_sync.operations.calls).

- Collections: branch ``i`` replays item ``i``'s recorded result, so the items must come in the same
  order on every invocation. Sets, dict views, dicts, generators and iterators are refused with a
  ValidationError that says what to pass (``sorted(...)`` or a list), before anything is checkpointed.
- Signatures: a map function that cannot take ``(ctx, item, index, items)``, or a parallel branch that
  cannot take ``(ctx)``, is one ValidationError at the call -- never N failed items inside a SUCCEEDED
  execution. Defaults, ``*args``, bound methods, ``functools.partial`` and callable objects are judged
  by their signature; a builtin without one is accepted.
- Names (SPEC §2 "Naming"): an item without an ``item_namer`` name is ``map-item-<i>``, a branch without
  a ParallelBranch name ``parallel-branch-<i>``; the map is named only by ``name`` (or a decorated
  function), the parallel only by ``name`` -- as the official SDK names them.
"""
from __future__ import annotations

import collections
import functools
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import durable_sync as ds
from durable_sync.operations.calls import check_takes

# -- helpers -----------------------------------------------------------------------------------------------


def recorded(engine, arn):
    """(Type, SubType, Name) of every operation the execution recorded, in order."""
    return [(op["Type"], op.get("SubType"), op.get("Name")) for op in engine.operations(arn)
            if op["Type"] != "EXECUTION"]


def refused(engine, call):
    """Run ``call(ctx)`` in a handler; returns the ValidationError's message and what was checkpointed."""
    @ds.durable_handler
    def handler(event, ctx):
        try:
            call(ctx)
        except ds.ValidationError as exc:
            return str(exc)
        return None

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    return res.result, recorded(engine, res.arn)


def item_fn(ctx, item, index, items):
    return item


# -- item 3: the items' order must be fixed ------------------------------------------------------------------

UNORDERED = {
    "set": lambda: {"a", "b", "c"},
    "frozenset": lambda: frozenset({"a", "b", "c"}),
    "dict.keys()": lambda: {"a": 1, "b": 2}.keys(),
    "dict.values()": lambda: {"a": 1, "b": 2}.values(),
    "dict.items()": lambda: {"a": 1, "b": 2}.items(),
    "dict": lambda: {"a": 1, "b": 2},
    "generator": lambda: (x for x in "abc"),
    "iterator": lambda: iter(["a", "b"]),
    "map object": lambda: map(str.upper, ["a", "b"]),
    "a string": lambda: "abc",
    "None": lambda: None,
    "an int": lambda: 3,
}


@pytest.mark.parametrize("kind", sorted(UNORDERED))
def test_map_refuses_a_collection_without_a_fixed_order_before_anything_is_checkpointed(engine, kind):
    message, ops = refused(engine, lambda ctx: ctx.map(UNORDERED[kind](), item_fn, name="m"))
    assert message is not None, f"ctx.map accepted a {kind}"
    assert "sorted(" in message or "list(" in message or "a list" in message, message
    assert ops == []  # refused when called: no Map context was started


@pytest.mark.parametrize("kind", ["set", "frozenset", "dict.keys()", "dict.values()", "dict.items()", "generator"])
def test_unordered_collections_are_told_to_pass_sorted_or_a_list(engine, kind):
    message, _ = refused(engine, lambda ctx: ctx.map(UNORDERED[kind](), item_fn))
    assert "sorted(" in message and ("list" in message), message


def test_parallel_refuses_a_set_of_branches(engine):
    branches = {lambda c: 1, lambda c: 2}
    message, ops = refused(engine, lambda ctx: ctx.parallel(branches))
    assert message is not None and "sorted(" in message, message
    assert ops == []
    message, _ = refused(engine, lambda ctx: ctx.parallel(b for b in [lambda c: 1]))
    assert message is not None and "list(" in message, message


class Letters(Sequence):
    """A user Sequence (not a list): accepted, passed to the item function as is."""

    def __init__(self, text):
        self._text = text

    def __getitem__(self, index):
        return self._text[index]

    def __len__(self):
        return len(self._text)


@pytest.mark.parametrize("make", [list, tuple, lambda xs: collections.deque(xs), Letters,
                                  lambda xs: sorted(set(xs))], ids=["list", "tuple", "deque", "Sequence", "sorted"])
def test_map_takes_any_sequence_in_its_order_and_passes_it_as_items(engine, make):
    items = make("cab") if make is not Letters else Letters("abc")
    seen = []

    def upper(ctx, item, index, all_items):
        seen.append(all_items is items)
        return ctx.step(lambda s: f"{index}:{item.upper()}", name=f"up-{index}")

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.map(items, upper).get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [f"{i}:{x.upper()}" for i, x in enumerate(items)]
    assert seen and all(seen)


def test_map_takes_a_range(engine):
    @ds.durable_handler
    def handler(event, ctx):
        return ctx.map(range(3), lambda c, item, index, items: item * 10 + len(items)).get_results()

    res = engine.run(handler)
    assert (res.status, res.result) == ("SUCCEEDED", [3, 13, 23])


# -- item 4: the function must take what the SDK passes ------------------------------------------------------

class TwoArgs:
    def __call__(self, ctx, item):
        return item


class FourArgs:
    def __call__(self, ctx, item, index, items):
        return f"obj-{item}"

    def method(self, ctx, item, index, items):
        return f"method-{item}"


def five(prefix, ctx, item, index, items):
    return f"{prefix}-{item}"


def kw_only_required(ctx, item, index, items, *, flag):
    return item


MAP_REFUSED = {
    "two parameters": lambda ctx, item: item,
    "one parameter": lambda ctx: 1,
    "five required": lambda ctx, item, index, items, extra: item,
    "required keyword-only": kw_only_required,
    "callable object of two": TwoArgs(),
    "partial binding too much": functools.partial(five, "p", "q"),
    "bound method of the wrong arity": TwoArgs().__call__,
}


@pytest.mark.parametrize("kind", sorted(MAP_REFUSED))
def test_a_map_function_that_cannot_take_ctx_item_index_items_is_refused_when_map_is_called(engine, kind):
    message, ops = refused(engine, lambda ctx: ctx.map(["a", "b", "c"], MAP_REFUSED[kind], name="m"))
    assert message is not None, f"ctx.map accepted a map function with {kind}"
    assert "(ctx, item, index, items)" in message, message
    assert ops == []


MAP_ACCEPTED = {
    "four parameters": lambda ctx, item, index, items: f"lambda-{item}",
    "*args": lambda ctx, item, *rest: f"args-{item}",
    "defaults": lambda ctx, item, index=None, items=None, extra=1: f"defaults-{item}",
    "only *args": lambda *args: f"star-{args[1]}",
    "keyword-only with a default": lambda ctx, item, index, items, *, flag=True: f"kw-{item}",
    "bound method": FourArgs().method,
    "callable object": FourArgs(),
    "partial": functools.partial(five, "partial"),
}


@pytest.mark.parametrize("kind", sorted(MAP_ACCEPTED))
def test_map_functions_that_can_take_the_four_arguments_run(engine, kind):
    fn = MAP_ACCEPTED[kind]

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.map(["a", "b"], fn).get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [fn(None, "a", 0, ["a", "b"]), fn(None, "b", 1, ["a", "b"])]


def test_a_wrong_map_function_fails_the_call_not_every_item_of_a_succeeded_execution(engine):
    calls = []

    def lookup(ctx, item):  # forgot index and items
        calls.append(item)
        return item

    @ds.durable_handler
    def handler(event, ctx):
        result = ctx.map(list(range(20)), lookup, name="lookups")
        return {"failed": result.failure_count}

    res = engine.run(handler)
    assert res.status == "FAILED"
    assert res.error["ErrorType"] == "ValidationError"
    assert "lookup(ctx, item)" in res.error["ErrorMessage"]
    assert "(ctx, item, index, items)" in res.error["ErrorMessage"]
    assert calls == []


BRANCH_REFUSED = {
    "no parameter": lambda: 1,
    "two parameters": lambda ctx, other: 1,
    "ParallelBranch of a function of none": ds.ParallelBranch(lambda: 1, "named"),
    "callable object of two": TwoArgs(),
}


@pytest.mark.parametrize("kind", sorted(BRANCH_REFUSED))
def test_a_parallel_branch_that_cannot_take_one_context_is_refused_when_parallel_is_called(engine, kind):
    message, ops = refused(engine, lambda ctx: ctx.parallel([lambda c: 0, BRANCH_REFUSED[kind]], name="p"))
    assert message is not None, f"ctx.parallel accepted a branch with {kind}"
    assert "parallel branch 1" in message and "(ctx)" in message, message
    assert ops == []


def test_parallel_branches_of_any_callable_shape_that_takes_one_context_run(engine):
    class Branch:
        def __call__(self, ctx):
            return "object"

        def method(self, ctx, suffix="!"):
            return "method" + suffix

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.parallel([
            lambda c: "lambda", lambda *args: "args", Branch(), Branch().method,
            functools.partial(lambda prefix, c: prefix, "partial"),
            bool,  # a builtin without a signature: accepted (bool(ctx) is True)
            ds.ParallelBranch(lambda c, extra=1: "defaults", "named"),
        ]).get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == ["lambda", "args", "object", "method!", "partial", True, "defaults"]


# check_takes is inspect.signature's binding: a property over random plain-function signatures and the same
# functions seen through functools.partial and a bound method (its fast path reads the code object) and as
# a callable object's __call__ (its inspect.signature path).
@settings(max_examples=150, deadline=None)
@given(positional=st.integers(0, 5), defaults=st.integers(0, 5), varargs=st.booleans(),
       kwonly_required=st.integers(0, 2), kwonly_default=st.integers(0, 2), nargs=st.integers(0, 6))
def test_check_takes_accepts_exactly_the_functions_a_call_with_n_arguments_binds(
        positional, defaults, varargs, kwonly_required, kwonly_default, nargs):
    defaults = min(defaults, positional)
    params = [f"p{i}" for i in range(positional - defaults)] + [f"d{i}=0" for i in range(defaults)]
    if varargs:
        params.append("*rest")
    elif kwonly_required or kwonly_default:
        params.append("*")
    params += [f"k{i}" for i in range(kwonly_required)] + [f"o{i}=0" for i in range(kwonly_default)]
    namespace: dict = {}
    exec(f"def fn({', '.join(params)}):\n    return 'ran'", namespace)  # noqa: S102 - test code
    fn = namespace["fn"]
    names = tuple(f"a{i}" for i in range(nargs))

    def binds(f, n):
        try:
            f(*range(n))
            return True
        except TypeError:
            return False

    def accepted(f, n):
        try:
            check_takes(f, names[:n], "fn")
            return True
        except ds.ValidationError:
            return False

    assert accepted(fn, nargs) == binds(fn, nargs)
    # the same signature minus its first parameter, through partial and a bound method
    if positional - defaults >= 1 or varargs:
        bound_p = functools.partial(fn, "first")
        holder = type("Holder", (), {"m": fn, "__call__": fn})()
        for wrapped in (bound_p, holder.m, holder):  # holder: a callable object, judged by inspect.signature
            n = max(nargs - 1, 0)
            assert accepted(wrapped, n) == binds(wrapped, n)


# -- item 14: names as the official SDK gives them ------------------------------------------------------------

def test_unnamed_map_items_and_parallel_branches_get_the_official_default_names(engine):
    def plain_branch(ctx):
        return ctx.step(lambda s: "p", name="in-branch")

    @ds.durable_handler
    def handler(event, ctx):
        ctx.map(["x", "y"], item_fn, name="named-map")
        ctx.map(["x", "y"], item_fn)  # a plain function does not name a map
        ctx.map(["x", "y", "z"], item_fn, name="namer", config=ds.MapConfig(
            item_namer=lambda item, index: None if item == "y" else f"item-{item}"))
        ctx.parallel([plain_branch, ds.ParallelBranch(plain_branch, "chosen"), ds.ParallelBranch(plain_branch)],
                     name="fan")
        ctx.parallel([plain_branch])
        return "done"

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    ops = engine.operations(res.arn)
    batches = [op for op in ops if op.get("SubType") in ("Map", "Parallel")]
    named = [(op["SubType"], op.get("Name"), sorted(child.get("Name") for child in ops
                                                    if child.get("ParentId") == op["Id"]))
             for op in batches]
    assert named == [
        ("Map", "named-map", ["map-item-0", "map-item-1"]),
        ("Map", None, ["map-item-0", "map-item-1"]),
        ("Map", "namer", ["item-x", "item-z", "map-item-1"]),
        ("Parallel", "fan", ["chosen", "parallel-branch-0", "parallel-branch-2"]),
        ("Parallel", None, ["parallel-branch-0"]),
    ]


def test_durable_parallel_branch_names_its_branch_or_leaves_the_default(engine):
    @ds.durable_parallel_branch(name="fetch-user")
    def fetch_user(ctx, user_id):
        return ctx.step(lambda s: {"id": user_id}, name="load-user")

    @ds.durable_parallel_branch()
    def fetch_orders(ctx, user_id):
        return ctx.step(lambda s: [user_id, "o1"], name="load-orders")

    @ds.durable_handler
    def handler(event, ctx):
        return ctx.parallel(functions=[fetch_user("u1"), fetch_orders("u1")], name="load").get_results()

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == [{"id": "u1"}, ["u1", "o1"]]
    branches = sorted(r[2] for r in recorded(engine, res.arn) if r[1] == "ParallelBranch")
    assert branches == ["fetch-user", "parallel-branch-1"]


# -- item 16: the official keyword names next to ours ----------------------------------------------------------

def test_official_keyword_names_work_and_an_argument_given_under_both_names_is_refused(engine):
    @ds.durable_handler
    def handler(event, ctx):
        out = {"map": ctx.map(inputs=["a"], func=item_fn).get_results(),
               "parallel": ctx.parallel(functions=[lambda c: "p"]).get_results(),
               "step": ctx.step(func=lambda s: "s", name="s"),
               "child": ctx.run_in_child_context(func=lambda c: "c", name="c")}
        with ctx.concurrently("group") as group:
            unit = group.step(func=lambda s: "u", name="u")
            child = group.run_in_child_context(func=lambda c: "gc", name="gc")
        out["group"] = [unit.result(), child.result()]
        refused = []
        for call in (lambda: ctx.map(["a"], item_fn, inputs=["b"]),
                     lambda: ctx.map(["a"], item_fn, func=item_fn),
                     lambda: ctx.parallel([lambda c: 1], functions=[lambda c: 2]),
                     lambda: ctx.step(lambda s: 1, func=lambda s: 2),
                     lambda: ctx.run_in_child_context(lambda c: 1, func=lambda c: 2)):
            try:
                call()
            except ds.ValidationError as exc:
                refused.append("the official SDK's name" in str(exc))
        out["refused"] = refused
        return out

    res = engine.run(handler)
    assert res.status == "SUCCEEDED", res.error
    assert res.result == {"map": ["a"], "parallel": ["p"], "step": "s", "child": "c", "group": ["u", "gc"],
                          "refused": [True] * 5}
