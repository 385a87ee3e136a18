"""What an operation call accepts, checked when the operation is called.

* ``ordered_sequence``: the collection ``ctx.map`` / ``ctx.parallel`` takes. Item ``i`` becomes
  branch ``i``, and on replay branch ``i``'s recorded result is item ``i``'s, so the order must be
  the same on every invocation (every process): a ``collections.abc.Sequence`` (list, tuple,
  range, ...; not a string or bytes). Sets and dict views (hash order changes per process), dicts,
  generators and iterators (consumed once, order not fixed) are refused with the fix.
* ``check_takes``: the function a map item / parallel branch runs must accept the arguments the
  SDK passes (``inspect.signature`` binding), so a wrong signature is one ``ValidationError`` at
  the call, not one failed item per branch inside a SUCCEEDED execution.
* ``either``: an official-SDK keyword name accepted next to ours (``map(inputs=...)``).
"""
from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping, Sequence, Set, ValuesView
from functools import partial
from types import FunctionType, MethodType
from typing import Any, Callable, Optional

from ..errors import ValidationError

__all__ = ["ordered_sequence", "check_takes", "either"]

_CO_VARARGS = inspect.CO_VARARGS


def either(ours: Any, official: Any, our_name: str, official_name: str, what: str) -> Any:
    """The value of an argument passed as ``our_name`` or as the official SDK's ``official_name``.

    Both default to None (never a valid value for these arguments); giving both is a ValidationError.
    """
    if official is None:
        return ours
    if ours is not None:
        raise ValidationError(f"{what} got both {our_name}= and {official_name}= (the official SDK's name for "
                              f"the same argument): pass one of them")
    return official


def ordered_sequence(value: Any, kind: str, noun: str) -> Sequence[Any]:
    """``value`` if it is a sequence whose order is the same on every invocation, else ValidationError.

    ``kind`` is the operation (``map`` / ``parallel``), ``noun`` what the sequence holds (``items``).
    """
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)):
        return value
    got = type(value).__name__
    if isinstance(value, (Set, ValuesView)):
        raise ValidationError(
            f"{kind} takes its {noun} in a fixed order, got a {got}, whose order changes from one process to the "
            f"next (item i is paired with branch i's recorded result on replay): pass sorted(...) or a list")
    if isinstance(value, Mapping):
        raise ValidationError(
            f"{kind} takes a list of {noun}, got a {got}: pass sorted(d.items()), sorted(d) or a list in a fixed "
            "order")
    if isinstance(value, Iterator):
        raise ValidationError(
            f"{kind} takes a list of {noun}, got a {got} (a generator or iterator: read once, its order is not "
            "fixed across invocations): pass list(...) if it yields the same order on every invocation, else "
            "sorted(...)")
    if isinstance(value, (str, bytes, bytearray)):
        raise ValidationError(f"{kind} takes a list of {noun}, got a {got}: wrap a single value in a list, or "
                              "pass list(...) to use its characters")
    raise ValidationError(f"{kind} takes a list (or other sequence) of {noun}, got {got}: pass a list, or "
                          "sorted(...) for an unordered collection")


def _plain_function_takes(fn: FunctionType, nargs: int) -> bool:
    """``inspect.signature(fn).bind(*nargs args)`` succeeds, for a plain function (its code object, fast)."""
    code = fn.__code__
    npos = code.co_argcount
    required = npos - len(fn.__defaults__ or ())
    if nargs < required or (nargs > npos and not code.co_flags & _CO_VARARGS):
        return False
    if code.co_kwonlyargcount:
        kwdefaults = fn.__kwdefaults__ or {}
        kwonly = code.co_varnames[npos:npos + code.co_kwonlyargcount]
        return all(name in kwdefaults for name in kwonly)
    return True


def _plain_target(fn: Any) -> tuple[Optional[FunctionType], int]:
    """``(function, positional arguments already bound)`` when ``fn`` is a plain function, a bound method of
    one or a keyword-free ``functools.partial`` of one (judged from its code object); else ``(None, 0)``."""
    bound = 0
    if type(fn) is partial and not fn.keywords:
        bound, fn = len(fn.args), fn.func
    elif type(fn) is MethodType:
        bound, fn = 1, fn.__func__
    if type(fn) is FunctionType and "__wrapped__" not in fn.__dict__ and "__signature__" not in fn.__dict__:
        return fn, bound
    return None, 0


def check_takes(fn: Callable[..., Any], params: tuple[str, ...], what: str) -> None:
    """Refuse ``fn`` unless it can be called with ``len(params)`` positional arguments (named ``params``).

    Plain functions, lambdas, bound methods, ``functools.partial``, callable objects, ``*args`` and
    defaults are judged by ``inspect.signature``; a builtin without a signature is accepted.
    """
    nargs = len(params)
    plain, bound = _plain_target(fn)
    if plain is not None:
        if _plain_function_takes(plain, nargs + bound):
            return
    else:
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # no signature to read (some builtins): the call will tell
            return
        try:
            signature.bind(*params)
            return
        except TypeError:
            pass
    raise ValidationError(f"{what} {_describe(fn)} cannot be called as f({', '.join(params)}): it must accept "
                          f"{nargs} positional argument{'s' if nargs != 1 else ''} ({', '.join(params)}); define it "
                          f"as def f({', '.join(params)}): ... (add defaults or *args for the ones it ignores)")


def _describe(fn: Any) -> str:
    name: Optional[str] = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if name is None:
        name = type(fn).__name__
    try:
        return f"{name}{inspect.signature(fn)}"
    except (TypeError, ValueError):
        return name
