"""Serialization of checkpointed values.

Plain JSON data is stored as compact JSON text (``"x"``, ``42``, ``{"a":1}``).
Anything else goes through jsonpickle, which is used only from this module and
imported only when the first such value is met (plain JSON never loads it).

Decoding is safe by default: before jsonpickle sees a payload, every tag in it
is checked against an allow-list. Reducers, functions, types, modules and
``repr`` payloads are refused, and ``py/object`` may only name a class that is
already imported (never imported because a payload names it) and that is a
dataclass, an enum, a named tuple, one of the standard value types, or a class
registered with :func:`allow`. The standard value types (datetime family,
Decimal, UUID, frozenset) and enums get their own handlers here so that they
never need ``py/reduce``; those handlers live in a private registry consulted
by this module's Pickler/Unpickler subclasses, so jsonpickle's global handler
registry (shared with other code in the process) is never changed. bytes, set
and tuple use jsonpickle's plain tags.

Values the official Python SDK wrote in its own format (``{"t": tag, "v": value}`` at the root, see
``serdes_envelope``) are read as that SDK means them, so an execution it started replays here; a
plain dict of ours with both keys ``t`` and ``v`` is escaped as below so it is never mistaken for one.
``ExtendedTypeSerDes`` writes that format too (for executions that go back to the official SDK).

Data is never changed silently. A dict key that jsonpickle would read as a tag
(any key starting with ``py/`` or ``json://``) is escaped: plain data is wrapped
whole in ``{"py/durable_sync.plain": ...}``, and inside other values each such
key is written as ``"py/=" + key`` and restored in place, in its order.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import importlib
import json
import sys
import threading
import types
from typing import Any, Optional, Protocol, TypeVar, runtime_checkable

from .errors import SerDesError, ValidationError, utf8_safe
from .serdes_envelope import ExtendedTypeSerDes, is_envelope, read_envelope

__all__ = [
    "SerDesContext",
    "SerDes",
    "DefaultSerDes",
    "JsonSerDes",
    "PassThroughSerDes",
    "ExtendedTypeSerDes",
    "DEFAULT_SERDES",
    "allow",
    "serialize_value",
    "deserialize_value",
    "decode_plain_json",
]


T = TypeVar("T")


@dataclasses.dataclass(frozen=True, init=False)
class SerDesContext:
    """Which operation a value belongs to (for custom serdes and error messages)."""

    operation_id: str = ""
    durable_execution_arn: str = ""
    operation_name: Optional[str] = None  # for error messages: the operation as the user named it

    def __init__(self, operation_id: str = "", durable_execution_arn: str = "",
                 operation_name: Optional[str] = None):
        # Every step makes one: the frozen dataclass __init__ (object.__setattr__ per field) takes twice as long.
        fields = self.__dict__
        fields["operation_id"] = operation_id
        fields["durable_execution_arn"] = durable_execution_arn
        fields["operation_name"] = operation_name


@runtime_checkable
class SerDes(Protocol[T]):
    """Turns a value into checkpoint text and back; ``SerDes[T]`` for a serdes of T values.

    Implement both methods (subclassing ``SerDes[MyType]`` is optional)::

        class OrderSerDes(ds.SerDes[Order]):
            def serialize(self, value: Order, ctx: ds.SerDesContext) -> str: ...
            def deserialize(self, text: str, ctx: ds.SerDesContext) -> Order: ...
    """

    def serialize(self, value: T, ctx: SerDesContext) -> str: ...

    def deserialize(self, text: str, ctx: SerDesContext) -> T: ...


# --------------------------------------------------------------------------- allow-list

# The standard value types allowed by default. The datetime family is captured at import so
# that patching (e.g. freezegun's FakeDatetime) cannot change it. Decimal and UUID are found in
# their modules when a value needs them: a Decimal can only exist once decimal is imported, and
# decoding one imports decimal (a fixed standard module of this table, never one a payload names).
_STD_CLASSES: dict[str, type] = {
    "datetime.datetime": _dt.datetime,
    "datetime.date": _dt.date,
    "datetime.time": _dt.time,
    "datetime.timedelta": _dt.timedelta,
    "datetime.timezone": _dt.timezone,
    "builtins.frozenset": frozenset,
}
_STD_ON_DEMAND = {"decimal.Decimal": "decimal", "uuid.UUID": "uuid"}
_registered: dict[str, type] = {}  # importable name -> class, from allow()
_registered_set: set[type] = set()
_STD_SET = frozenset(_STD_CLASSES.values())


def _std_class(name: str, load: bool = False) -> Any:
    """The standard class ``name`` of the tables above (None if unknown, or not loaded and not ``load``)."""
    cls = _STD_CLASSES.get(name)
    if cls is None and name in _STD_ON_DEMAND:
        module = sys.modules.get(_STD_ON_DEMAND[name])
        if module is None and load:
            module = importlib.import_module(_STD_ON_DEMAND[name])
        cls = getattr(module, name.rpartition(".")[2], None)
    return cls

_SAFE_TAGS = frozenset({"py/object", "py/tuple", "py/set", "py/b64", "py/b85", "py/id"})
_OBJECT_TAGS = frozenset({"py/newargs", "py/seq", "py/state"})  # only next to py/object
_JSON_KEY = "json://"  # jsonpickle's prefix for non-string dict keys (keys=True)
_RESERVED = ("py/", _JSON_KEY)  # dict keys jsonpickle would read as tags
_ESCAPE = "py/durable_sync.plain"  # wraps plain data whose dicts use reserved keys
_KEY_ESCAPE = "py/="  # prefixes a reserved key inside a jsonpickle-encoded value

_HINT = (
    "Return JSON data (dict/list/str/number/bool/None), a dataclass, enum or named tuple; "
    "register the class with ds.serdes.allow(MyClass); or pass a custom serdes in the operation's config."
)


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def allow(*classes: type) -> Any:
    """Allow instances of ``classes`` to be decoded from checkpoints.

    Use for classes that are neither dataclasses, enums nor named tuples. With a
    single class it returns the class, so it also works as a class decorator.
    """
    for cls in classes:
        if not isinstance(cls, type):
            raise ValidationError(f"ds.serdes.allow() takes classes, got {cls!r}")
        _registered[_class_name(cls)] = cls
        _registered_set.add(cls)
    return classes[0] if len(classes) == 1 else None


def _class_has(cls: type, attr: str) -> bool:
    # Look in the class dicts only: no descriptor or metaclass code runs.
    return any(attr in vars(c) for c in cls.__mro__)


def _is_allowed_class(cls: Any) -> bool:
    if not isinstance(cls, type):
        return False
    if cls in _registered_set or cls in _STD_SET or _std_class(_class_name(cls)) is cls:
        return True
    if _class_has(cls, "__dataclass_fields__") or issubclass(cls, enum.Enum):
        return True
    return issubclass(cls, tuple) and _class_has(cls, "_fields")  # named tuple


def _find_loaded_class(name: str) -> Any:
    """The object ``name`` refers to, looked up in already imported modules only."""
    found = _registered.get(name) or _std_class(name, load=True)
    if found is not None:
        return found
    parts = name.split(".")
    for split in range(len(parts) - 1, 0, -1):
        obj: Any = sys.modules.get(".".join(parts[:split]))
        if obj is None:
            continue
        for attr in parts[split:]:
            if not isinstance(obj, (type, types.ModuleType)):
                obj = None  # only walk through modules and classes
                break
            obj = vars(obj).get(attr)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def _refuse_tag(tag: str) -> SerDesError:
    return SerDesError(
        f"the payload uses jsonpickle tag {tag!r}, which safe decoding refuses: it can make the decoder "
        "call code named by the payload (reducers, functions, types, modules, repr). Only plain data, "
        "dataclasses, enums, named tuples, standard value types (datetime family, Decimal, UUID, bytes, "
        "set, frozenset, tuple) and classes registered with ds.serdes.allow(MyClass) are decoded; "
        "return one of those, or pass a custom serdes in the operation's config."
    )


def _check_class(name: Any, classes: dict[str, type]) -> None:
    if not isinstance(name, str):
        raise SerDesError(f"refused to decode a malformed payload: 'py/object' must name a class, got {name!r}")
    if name in classes:
        return
    cls = _find_loaded_class(name)
    if cls is None:
        raise SerDesError(
            f"refused to decode class {name!r}: no loaded module defines it under that name, and "
            "durable_sync never imports a module named by a payload. Import its module before the "
            "operation runs (define the class at module level), or register it with ds.serdes.allow(MyClass)."
        )
    if not _is_allowed_class(cls):
        raise SerDesError(
            f"refused to decode class {name!r}: it is not a dataclass, enum, named tuple or standard "
            "value type. If it is safe to rebuild from its attributes, register it with "
            "ds.serdes.allow(MyClass); otherwise return JSON data or pass a custom serdes."
        )
    classes[name] = cls


def _check_tree(node: Any, classes: dict[str, type]) -> bool:
    """Refuse unsafe tags/classes in parsed jsonpickle data; True if any tag was seen.

    Fills ``classes`` with every allowed class named by ``py/object`` so the
    decoder finds them without importing anything.
    """
    tagged = False
    if type(node) is list:
        for item in node:
            tagged = _check_tree(item, classes) or tagged
    elif type(node) is dict:
        for key, value in node.items():
            if key.startswith(_KEY_ESCAPE):
                tagged = True  # user data: the decoder unescapes the key
            elif key.startswith("py/"):
                tagged = True
                if key == "py/object":
                    _check_class(value, classes)
                elif key in _OBJECT_TAGS:
                    if "py/object" not in node:
                        raise _refuse_tag(key)
                elif key not in _SAFE_TAGS:
                    raise _refuse_tag(key)
            elif key.startswith(_JSON_KEY):
                tagged = True
                try:
                    parsed_key = json.loads(key[len(_JSON_KEY):])
                except ValueError:
                    parsed_key = None  # jsonpickle keeps an unparsable key as a string
                tagged = _check_tree(parsed_key, classes) or tagged
            tagged = _check_tree(value, classes) or tagged
    return tagged


# --------------------------------------------------------------------------- handlers


def _flatten_tz(tz: Optional[_dt.tzinfo]) -> Any:
    if tz is None:
        return None
    if isinstance(tz, _dt.timezone):
        offset, *name = tz.__getinitargs__()
        return {"offset": _flatten_td(offset), "name": name[0] if name else None}
    key = getattr(tz, "key", None)
    if type(tz).__module__ == "zoneinfo" and isinstance(key, str):
        return {"zone": key}
    raise TypeError(f"tzinfo {type(tz).__name__} is not supported; use datetime.timezone or zoneinfo.ZoneInfo")


def _restore_tz(data: Any) -> Optional[_dt.tzinfo]:
    if data is None:
        return None
    if "zone" in data:
        import zoneinfo  # stdlib; the key is validated by zoneinfo itself

        return zoneinfo.ZoneInfo(data["zone"])
    offset = _restore_td(data["offset"])
    return _dt.timezone(offset) if data.get("name") is None else _dt.timezone(offset, data["name"])


def _flatten_td(td: _dt.timedelta) -> list[int]:
    return [td.days, td.seconds, td.microseconds]


def _restore_td(data: list[int]) -> _dt.timedelta:
    days, seconds, micros = data
    return _dt.timedelta(days=days, seconds=seconds, microseconds=micros)


class _Handler:
    """A handler of this module's private registry (jsonpickle's handler protocol).

    ``context`` is the Pickler or Unpickler at work, for nested values.
    """

    def __init__(self, context: Any):
        self.context = context


class _StdHandler(_Handler):
    """Base for handlers of standard types: always tag with the base class name."""

    name = ""

    def flatten(self, obj: Any, data: dict) -> dict:
        data["py/object"] = self.name  # subclasses (e.g. freezegun's) decode as the real type
        data.update(self.dump(obj))
        return data


class _DatetimeHandler(_StdHandler):
    name = "datetime.datetime"

    def dump(self, obj: _dt.datetime) -> dict:
        out = {"iso": obj.replace(tzinfo=None, fold=0).isoformat(), "tz": _flatten_tz(obj.tzinfo)}
        return {**out, "fold": 1} if obj.fold else out

    def restore(self, data: dict) -> _dt.datetime:
        naive = _STD_CLASSES["datetime.datetime"].fromisoformat(data["iso"])
        return naive.replace(tzinfo=_restore_tz(data.get("tz")), fold=data.get("fold", 0))


class _DateHandler(_StdHandler):
    name = "datetime.date"

    def dump(self, obj: _dt.date) -> dict:
        return {"iso": _dt.date.isoformat(obj)}

    def restore(self, data: dict) -> _dt.date:
        return _STD_CLASSES["datetime.date"].fromisoformat(data["iso"])


class _TimeHandler(_StdHandler):
    name = "datetime.time"

    def dump(self, obj: _dt.time) -> dict:
        out = {"iso": obj.replace(tzinfo=None, fold=0).isoformat(), "tz": _flatten_tz(obj.tzinfo)}
        return {**out, "fold": 1} if obj.fold else out

    def restore(self, data: dict) -> _dt.time:
        naive = _dt.time.fromisoformat(data["iso"])
        return naive.replace(tzinfo=_restore_tz(data.get("tz")), fold=data.get("fold", 0))


class _TimedeltaHandler(_StdHandler):
    name = "datetime.timedelta"

    def dump(self, obj: _dt.timedelta) -> dict:
        return {"dsu": _flatten_td(obj)}

    def restore(self, data: dict) -> _dt.timedelta:
        return _restore_td(data["dsu"])


class _TimezoneHandler(_StdHandler):
    name = "datetime.timezone"

    def dump(self, obj: _dt.timezone) -> dict:
        return {"tz": _flatten_tz(obj)}

    def restore(self, data: dict) -> _dt.timezone:
        return _restore_tz(data["tz"])


class _DecimalHandler(_StdHandler):
    name = "decimal.Decimal"

    def dump(self, obj: Any) -> dict:
        return {"value": str(obj)}

    def restore(self, data: dict) -> Any:
        return _std_class(self.name, load=True)(data["value"])


class _UUIDHandler(_StdHandler):
    name = "uuid.UUID"

    def dump(self, obj: Any) -> dict:
        return {"hex": obj.hex}

    def restore(self, data: dict) -> Any:
        return _std_class(self.name, load=True)(hex=data["hex"])


class _FrozensetHandler(_StdHandler):
    name = "builtins.frozenset"

    def dump(self, obj: frozenset) -> dict:
        return {"items": [self.context.flatten(item, reset=False) for item in obj]}

    def restore(self, data: dict) -> frozenset:
        return frozenset(self.context.restore(item, reset=False) for item in data["items"])


class _EnumHandler(_Handler):
    """Enum members by value, so decoding calls ``cls(value)``, not a reducer."""

    def flatten(self, obj: enum.Enum, data: dict) -> dict:
        data["py/object"] = _class_name(type(obj))
        data["value"] = self.context.flatten(obj.value, reset=False)
        return data

    def restore(self, data: dict) -> enum.Enum:
        cls = _find_loaded_class(data["py/object"])  # already checked by _check_tree
        return cls(self.context.restore(data["value"], reset=False))


# Order matters for subclasses: datetime is a subclass of date.
_HANDLERS: tuple[type[_StdHandler], ...] = (_DatetimeHandler, _DateHandler, _TimeHandler, _TimedeltaHandler,
                                            _TimezoneHandler, _DecimalHandler, _UUIDHandler, _FrozensetHandler)


def _handler_for(cls: Any) -> Optional[type[_Handler]]:
    if not isinstance(cls, type):
        return None
    for handler in _HANDLERS:
        base = _std_class(handler.name)  # None when its module is not loaded: no such value exists
        if base is not None and issubclass(cls, base):
            return handler
    return _EnumHandler if issubclass(cls, enum.Enum) else None


_codec: Optional[tuple[type, type]] = None
_codec_lock = threading.Lock()


def _jsonpickle() -> tuple[type, type]:
    """(Pickler, Unpickler) subclasses bound to this module's rules; jsonpickle is imported on first use."""
    codec = _codec
    if codec is None:
        with _codec_lock:
            codec = _codec or _build_codec()
    return codec


def _build_codec() -> tuple[type, type]:
    global _codec
    from jsonpickle.pickler import Pickler
    from jsonpickle.unpickler import Unpickler, _Proxy

    class StrictPickler(Pickler):
        """Our handlers first, reserved keys escaped, and no silent ``null`` for what cannot be encoded."""

        def _flatten_obj_instance(self, obj: Any) -> Any:
            handler = _handler_for(type(obj))
            if handler is None:
                return super()._flatten_obj_instance(obj)
            return handler(self).flatten(obj, {})

        def _flatten_string_key_value_pair(self, k: Any, v: Any, data: dict) -> dict:
            if isinstance(k, str) and k.startswith(_RESERVED):
                k = _KEY_ESCAPE + k  # user data, not a tag: unescaped by StrictUnpickler._restore_dict
            return super()._flatten_string_key_value_pair(k, v, data)

        def _pickle_warning(self, obj: Any) -> None:  # jsonpickle's hook for "replaced with None"
            raise SerDesError(f"jsonpickle cannot encode a {_type_name(obj)} value")

    class StrictUnpickler(Unpickler):
        """Our handlers first, escaped keys restored, and no ``py/id`` to an object that does not exist."""

        def _restore_object(self, obj: dict) -> Any:
            handler = _handler_for(self._classes.get(obj["py/object"]))  # classes checked by _check_tree
            if handler is None:
                return super()._restore_object(obj)
            proxy = _Proxy()  # what jsonpickle does for its own handlers: references resolve to the instance
            self._mkref(proxy)
            instance = handler(self).restore(obj)
            proxy.reset(instance)
            self._swapref(proxy, instance)
            return instance

        def _restore_dict(self, obj: dict) -> dict:
            data = super()._restore_dict(obj)
            escaped = [k for k in obj if k.startswith(_KEY_ESCAPE)]
            if escaped:  # rename in place (the dict may be referenced) and keep the keys' order
                items = list(data.items())
                data.clear()
                for key, value in items:
                    data[key[len(_KEY_ESCAPE):] if type(key) is str and key.startswith(_KEY_ESCAPE) else key] = value
            return data

        def _restore_id(self, obj: dict) -> Any:
            # jsonpickle would hand back its internal proxy object (or None) for a reference to nothing.
            idx, objs = obj["py/id"], self._objs
            if type(idx) is not int or not 0 <= idx < len(objs):
                raise SerDesError(f"refused to decode a malformed payload: 'py/id' {idx!r} refers to no earlier object")
            return objs[idx]

    _codec = (StrictPickler, StrictUnpickler)
    return _codec


# --------------------------------------------------------------------------- default serdes

_ENCODER = json.JSONEncoder(separators=(",", ":"))
_encode_str = json.encoder.encode_basestring_ascii
_scan_once = json.JSONDecoder().scan_once


def _reject(obj: Any) -> Any:
    raise TypeError(f"{type(obj).__name__} is not JSON data")


if json.encoder.c_make_encoder is not None:
    # JSONEncoder.encode builds this C encoder on every call; building it once halves the cost.
    # No cycle markers: it only ever sees data that _is_plain walked to the end (so acyclic).
    _c_encoder = json.encoder.c_make_encoder(None, _reject, _encode_str, None, ":", ",", False, False, True)

    def _encode_plain(value: Any) -> str:
        return "".join(_c_encoder(value, 0))
else:  # pragma: no cover - CPython always has the C accelerator
    _encode_plain = _ENCODER.encode


def _loads(text: str) -> Any:
    """json.loads without its per-call overhead; falls back to it for whitespace and errors."""
    try:
        value, end = _scan_once(text, 0)
        if end == len(text):
            return value
    except (StopIteration, TypeError):
        pass
    return json.loads(text)


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _is_plain(value: Any) -> bool:
    """True for JSON data: dicts with str keys, lists, str, int, float, bool, None (exact types)."""
    t = type(value)
    if t is dict:
        for key, item in value.items():
            if type(key) is not str or (type(item) not in _SCALARS and not _is_plain(item)):
                return False
        return True
    if t is list:
        for item in value:
            if type(item) not in _SCALARS and not _is_plain(item):
                return False
        return True
    return t in _SCALARS


def _has_reserved_key(value: Any) -> bool:
    """True if some dict in plain data has a key jsonpickle would read as a tag."""
    if type(value) is dict:
        return any(k.startswith(_RESERVED) or _has_reserved_key(v) for k, v in value.items())
    return type(value) is list and any(_has_reserved_key(v) for v in value)


class DefaultSerDes:
    """Plain JSON for JSON data, safe jsonpickle for everything else."""

    def serialize(self, value: Any, ctx: Optional[SerDesContext] = None) -> str:
        t = type(value)
        if t is str:
            return _encode_str(value)
        if t is int:
            return int.__repr__(value)
        if value is None:
            return "null"
        if t is bool:
            return "true" if value else "false"
        try:
            plain = _is_plain(value)
        except RecursionError:  # cyclic or very deep: jsonpickle uses references
            plain = False
        if plain:
            text = _encode_plain(value)
            if (('"py/' in text or '"json://' in text) and _has_reserved_key(value)) or is_envelope(value):
                text = _encode_plain({_ESCAPE: value})  # so its keys are not read as tags (or an official envelope)
            return text
        pickler, _ = _jsonpickle()
        tree = pickler(keys=True).flatten(value)
        _check_tree(tree, {})  # refuse now what decoding would refuse later
        return _ENCODER.encode(tree)

    def deserialize(self, text: str, ctx: Optional[SerDesContext] = None) -> Any:
        if '"py/' not in text and '"json://' not in text:  # fast path: nothing jsonpickle-tagged
            data = _loads(text)
            # {"t": ..., "v": ...}: a value the official SDK wrote (this serializer escapes such dicts)
            return read_envelope(data) if is_envelope(data) else data
        data = _loads(text)
        if type(data) is dict and len(data) == 1 and _ESCAPE in data:
            return data[_ESCAPE]
        classes: dict[str, type] = {}
        if not _check_tree(data, classes):
            return read_envelope(data) if is_envelope(data) else data  # "py/" only appeared inside strings
        _, unpickler = _jsonpickle()
        return unpickler(keys=True, safe=True, on_missing="error").restore(data, classes=classes)


DEFAULT_SERDES = DefaultSerDes()


class JsonSerDes:
    """``json.dumps`` / ``json.loads`` only (the official SDK's JsonSerDes): JSON data, nothing else."""

    def serialize(self, value: Any, ctx: Optional[SerDesContext] = None) -> str:
        return json.dumps(value)

    def deserialize(self, text: str, ctx: Optional[SerDesContext] = None) -> Any:
        return json.loads(text)


class PassThroughSerDes:
    """Stores a str result as it is and hands the stored text back (the official SDK's PassThroughSerDes)."""

    def serialize(self, value: Any, ctx: Optional[SerDesContext] = None) -> str:
        return value

    def deserialize(self, text: str, ctx: Optional[SerDesContext] = None) -> Any:
        return text


# --------------------------------------------------------------------------- entry points


def _type_name(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else _class_name(cls)


def _op(ctx: Optional[SerDesContext]) -> str:
    if ctx is None:
        return "<unknown>"
    name = getattr(ctx, "operation_name", None)
    return repr(name) if name else repr(ctx.operation_id)


def _unsupported_part(value: Any, depth: int = 0) -> Any:
    """The first part of ``value`` the default serdes cannot checkpoint, or None when every part is data."""
    t = type(value)
    if value is None or t in (str, int, float, bool) or depth > 100:
        return None
    if t in (dict, list, tuple, set, frozenset) or (isinstance(value, (list, tuple, dict)) and _is_allowed_class(t)):
        parts = [*value.keys(), *value.values()] if isinstance(value, dict) else list(value)
    elif dataclasses.is_dataclass(value) and _is_allowed_class(t):
        parts = [getattr(value, f.name, None) for f in dataclasses.fields(value)]
    elif _is_allowed_class(t):
        parts = list(vars(value).values()) if hasattr(value, "__dict__") and t in _registered_set else []
    else:
        return value
    for part in parts:
        found = _unsupported_part(part, depth + 1)
        if found is not None:
            return found
    return None


def _serialize_advice(value: Any) -> Optional[str]:
    """What to do about a value the default serdes refused: the right advice for the part that is not data."""
    part = _unsupported_part(value)
    if part is None:
        return None
    where = "" if part is value else f" inside the {_type_name(value)}"
    step_fn = getattr(part, "__durable_step__", None)  # set by @durable_step on the call it returns
    if step_fn is not None:
        import inspect

        name = getattr(step_fn, "__name__", "step")
        args = ", ".join(list(inspect.signature(step_fn).parameters)[1:])
        return (f"the value is the @durable_step function {name}{where}, not its result: {name} takes arguments "
                f"({args}), so ctx.step({name}) only binds the step context to them; call it: "
                f"ctx.step({name}({args}))")
    cls = type(part)
    module = cls.__module__.split(".")[0]
    if hasattr(part, "__dict__") and not callable(part) and module not in sys.stdlib_module_names \
            and module != "builtins":
        return (f"{_class_name(cls)}{where} is not a dataclass, enum, named tuple or standard value type: register "
                f"it with ds.serdes.allow({cls.__name__}) if it can be rebuilt from its attributes, return plain "
                "data, or pass a custom serdes in the operation's config")
    what = "code (call it and return its result)" if callable(part) else "live process state"
    return (f"a {_type_name(part)}{where} cannot be checkpointed: it is {what}, not data. Return plain data: "
            "JSON data (dict/list/str/number/bool/None), a dataclass, enum or named tuple")


def serialize_value(serdes: Optional[SerDes], value: Any, ctx: SerDesContext) -> str:
    """Checkpoint text for ``value``; any failure becomes a SerDesError naming the operation and what to do.

    The default serdes writes ASCII JSON (a lone surrogate in a string is kept as ``\\udcff``
    and comes back exactly); text a custom serdes returns has characters UTF-8 cannot encode
    replaced by U+FFFD (``errors.utf8_safe``).
    """
    try:
        text = (serdes or DEFAULT_SERDES).serialize(value, ctx)
    except Exception as exc:
        advice = _serialize_advice(value) if serdes is None or serdes is DEFAULT_SERDES else None
        if advice is not None:
            raise SerDesError(f"could not serialize the {_type_name(value)} value of operation {_op(ctx)}: {advice}") \
                from exc
        raise SerDesError(
            f"could not serialize the {_type_name(value)} value of operation {_op(ctx)}: {exc} -- {_HINT}"
        ) from exc
    if not isinstance(text, str):
        raise SerDesError(
            f"the serdes of operation {_op(ctx)} returned {type(text).__name__} for a "
            f"{_type_name(value)} value; SerDes.serialize must return str"
        )
    return utf8_safe(text)  # what is stored is what the first run decodes too


def deserialize_value(serdes: Optional[SerDes], text: Optional[str], ctx: SerDesContext) -> Any:
    """The value stored as ``text`` (None stays None); failures become SerDesError."""
    if text is None:
        return None
    try:
        return (serdes or DEFAULT_SERDES).deserialize(text, ctx)
    except Exception as exc:
        raise SerDesError(
            f"could not deserialize the checkpointed value of operation {_op(ctx)} "
            f"({len(text)} chars): {exc} -- {_HINT}"
        ) from exc


#: Values the default serdes stores exactly: decoding their text gives an equal value of the same type.
_STORED_EXACTLY = frozenset({str, int, bool, type(None)})


def as_replayed(serdes: Optional[SerDes], value: Any, text: str, ctx: SerDesContext) -> Any:
    """What a replay returns for ``value``, checkpointed as ``text``: the first run returns the same.

    ``text`` decoded (``deserialize_value``), except for a str, int, bool or None under the default
    serdes, which round-trip exactly: those are returned as they are, without decoding.
    """
    if (serdes is None or serdes is DEFAULT_SERDES) and type(value) in _STORED_EXACTLY:
        return value
    return deserialize_value(serdes, text, ctx)


def decode_plain_json(text: Optional[str | bytes], what: str) -> Any:
    """Decode a payload from outside the function (event, callback or invoke result).

    Plain ``json.loads`` only, never jsonpickle: ``{"py/reduce": ...}`` stays a dict.
    """
    if text is None or len(text) == 0:
        return None
    try:
        return _loads(text)  # json.loads, without its per-call overhead
    except (ValueError, TypeError) as exc:
        raise SerDesError(f"{what} is not valid JSON: {exc}") from exc
