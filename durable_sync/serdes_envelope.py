"""``ExtendedTypeSerDes``: the official Python SDK's default value format, read and written by durable_sync.

The official SDK stores primitives and lists of primitives as plain JSON (``42``, ``"x"``,
``[1,"a"]``) and every other value as a typed envelope ``{"t": tag, "v": value}``, nested::

    {"a": 1}         -> {"t":"m","v":{"a":{"t":"i","v":1}}}
    (1, 2)           -> {"t":"t","v":[{"t":"i","v":1},{"t":"i","v":2}]}
    a BatchResult    -> {"t":"br","v":<its to_dict(), encoded as a map's value>}

Tags: ``n`` None, ``s`` str, ``i`` int, ``f`` float, ``b`` bool, ``B`` bytes (base64), ``u`` UUID,
``d`` Decimal, ``dt`` datetime, ``D`` date (ISO 8601), ``l`` list, ``t`` tuple, ``m`` dict, ``br``
BatchResult. Other types are refused (SerDesError), as in the official SDK. Decoding builds only
these types: nothing in a payload can name a class or a function.

durable_sync's default serializer reads this format (an envelope at the root) but writes dicts,
tuples and batch results its own way, which the official SDK cannot read: an execution that goes
from durable_sync to the official SDK needs ``@ds.durable_handler(serdes=ds.serdes.ExtendedTypeSerDes())``
(map / parallel then checkpoint their BatchResult as ``br``, as the official SDK does).
"""
from __future__ import annotations

import base64
import datetime as _dt
import json
import sys
from typing import Any, Optional

from .errors import SerDesError

__all__ = ["ExtendedTypeSerDes", "is_envelope", "read_envelope"]


def _is_primitive(value: Any) -> bool:
    """What the official format writes as plain JSON: a primitive, or a list (of lists) of primitives."""
    if value is None or isinstance(value, (str, int, float)):  # bool is an int
        return True
    if isinstance(value, list):
        return all(_is_primitive(item) for item in value)
    return False


def _loaded(module: str, name: str) -> Optional[type]:
    """``module.name`` if that module is imported already (a value of the type cannot exist otherwise)."""
    mod = sys.modules.get(module)
    return getattr(mod, name, None) if mod is not None else None


def _encode(value: Any) -> dict:
    if value is None:
        return {"t": "n", "v": None}
    if isinstance(value, str):
        return {"t": "s", "v": value}
    if isinstance(value, bool):
        return {"t": "b", "v": value}
    if isinstance(value, int):
        return {"t": "i", "v": value}
    if isinstance(value, float):
        return {"t": "f", "v": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"t": "B", "v": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, _dt.datetime):
        return {"t": "dt", "v": value.isoformat()}
    if isinstance(value, _dt.date):
        return {"t": "D", "v": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return {"t": "l" if isinstance(value, list) else "t", "v": [_encode(item) for item in value]}
    if isinstance(value, dict):
        if any(isinstance(key, tuple) for key in value):
            raise SerDesError("tuple keys are not supported by ExtendedTypeSerDes")
        return {"t": "m", "v": {key: _encode(item) for key, item in value.items()}}
    uuid_cls, decimal_cls = _loaded("uuid", "UUID"), _loaded("decimal", "Decimal")
    if uuid_cls is not None and isinstance(value, uuid_cls):
        return {"t": "u", "v": str(value)}
    if decimal_cls is not None and isinstance(value, decimal_cls):
        return {"t": "d", "v": str(value)}
    from .operations.batch_result import BatchResult
    if isinstance(value, BatchResult):
        return {"t": "br", "v": _encode(value.to_dict())["v"]}
    raise SerDesError(f"ExtendedTypeSerDes cannot write a {type(value).__name__} (it takes None, str, int, float, bool, "
                      "bytes, UUID, Decimal, datetime, date, list, tuple, dict and BatchResult)")


def _decode(tag: Any, value: Any) -> Any:
    if tag in ("n", "s", "i", "f", "b"):
        return value
    if tag == "l" or tag == "t":
        if not isinstance(value, list):
            raise SerDesError(f"malformed envelope: tag {tag!r} needs a list, got {type(value).__name__}")
        items = [_unwrap(item) for item in value]
        return items if tag == "l" else tuple(items)
    if tag == "m" or tag == "br":
        if not isinstance(value, dict):
            raise SerDesError(f"malformed envelope: tag {tag!r} needs an object, got {type(value).__name__}")
        data = {key: _unwrap(item) for key, item in value.items()}
        if tag == "m":
            return data
        from .operations.batch_result import BatchResult
        return BatchResult.from_dict(data)
    if tag == "B":
        return base64.b64decode(value)
    if tag == "dt":
        return _dt.datetime.fromisoformat(value)
    if tag == "D":
        return _dt.date.fromisoformat(value)
    if tag == "u":
        import uuid
        return uuid.UUID(value)
    if tag == "d":
        import decimal
        return decimal.Decimal(value)
    raise SerDesError(f"unknown type tag {tag!r} in an ExtendedTypeSerDes envelope")


def _unwrap(item: Any) -> Any:
    if isinstance(item, dict) and "t" in item and "v" in item:
        return _decode(item["t"], item["v"])
    return item


def is_envelope(data: Any) -> bool:
    """Whether decoded JSON ``data`` is an envelope at the root (a dict with keys ``t`` and ``v``)."""
    return type(data) is dict and "t" in data and "v" in data


def read_envelope(data: dict) -> Any:
    """The value an envelope (``is_envelope(data)``) stands for."""
    return _decode(data["t"], data["v"])


class ExtendedTypeSerDes:
    """The official Python SDK's default serializer (envelope format), for executions that move between the SDKs."""

    def serialize(self, value: Any, ctx: Any = None) -> str:
        if _is_primitive(value):
            return json.dumps(value, separators=(",", ":"))
        return json.dumps(_encode(value), separators=(",", ":"))

    def deserialize(self, text: str, ctx: Any = None) -> Any:
        data = json.loads(text)
        if _is_primitive(data):
            return data
        if not is_envelope(data):
            raise SerDesError("malformed envelope: the text is neither plain JSON data (a primitive or a list of "
                              'them) nor {"t": tag, "v": value}')
        return read_envelope(data)
