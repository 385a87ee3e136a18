"""Tests of durable_sync.serdes: plain JSON, jsonpickle round-trips, safe decoding."""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import decimal
import enum
import json
import pathlib
import subprocess  # also a loaded, non-allowed class for the attack tests
import sys
import threading
import typing
import uuid
import zoneinfo

import pytest
from freezegun import freeze_time

from durable_sync import serdes
from durable_sync.errors import SerDesError, ValidationError
from durable_sync.serdes import (
    DEFAULT_SERDES,
    SerDes,
    SerDesContext,
    decode_plain_json,
    deserialize_value,
    serialize_value,
)

CTX = SerDesContext(operation_id="op-123", durable_execution_arn="arn:aws:lambda:us-east-1:1:function:f:1/durable-execution/x/y")
CANARY: list[str] = []


def canary(*args):
    """Would record a call; an attack that reaches it has executed code."""
    CANARY.append(repr(args))
    return "called"


@pytest.fixture(autouse=True)
def _clear_canary():
    CANARY.clear()
    yield
    assert CANARY == [], "a payload executed code"


def roundtrip(value):
    return DEFAULT_SERDES.deserialize(DEFAULT_SERDES.serialize(value, CTX), CTX)


# ----------------------------------------------------------------------------- user types


class Color(enum.Enum):
    RED = "red"
    PAIR = (1, 2)


class Level(enum.IntEnum):
    HIGH = 3


class Perm(enum.Flag):
    R = 1
    W = 2


Point = collections.namedtuple("Point", "x y")


class Pair(typing.NamedTuple):
    left: int
    right: str = "r"


@dataclasses.dataclass
class Order:
    id: int
    placed: dt.datetime
    items: list = dataclasses.field(default_factory=list)
    total: decimal.Decimal = decimal.Decimal("0")


@dataclasses.dataclass(frozen=True, slots=True)
class Frozen:
    x: int
    tags: tuple = ()


class Plain:
    """Not a dataclass: decodable only once registered with allow()."""

    def __init__(self, a=1):
        self.a = a

    def __eq__(self, other):
        return type(other) is Plain and other.a == self.a


@serdes.allow
class Registered:
    def __init__(self, v=0):
        self.v = v

    def __eq__(self, other):
        return type(other) is Registered and other.v == self.v


# ----------------------------------------------------------------------------- plain JSON


@pytest.mark.parametrize(
    "value, text",
    [
        ("x", '"x"'),
        (42, "42"),
        (-7, "-7"),
        (1.5, "1.5"),
        (True, "true"),
        (False, "false"),
        (None, "null"),
        ("é\n", '"\\u00e9\\n"'),
        ([1, "a", None], '[1,"a",null]'),
        ({"a": {"b": [True, 2.5]}}, '{"a":{"b":[true,2.5]}}'),
        ({}, "{}"),
        ([], "[]"),
    ],
)
def test_plain_json_text(value, text):
    assert DEFAULT_SERDES.serialize(value, CTX) == text
    back = DEFAULT_SERDES.deserialize(text, CTX)
    assert back == value and type(back) is type(value)


def test_plain_json_never_touches_jsonpickle():
    # A fresh interpreter: plain data round-trips without jsonpickle ever being imported.
    code = """if True:
        import sys
        from durable_sync.serdes import DEFAULT_SERDES as S
        for value in ["s", 3, None, True, 2.5, [1, {"a": "py/not-a-tag"}], {"k": ["v", 1, None]},
                      {"py/reduce": [1], "json://x": {"py/b64": "AA=="}}]:
            assert S.deserialize(S.serialize(value, None), None) == value, value
        assert "jsonpickle" not in sys.modules
        assert S.deserialize(S.serialize((1, 2), None), None) == (1, 2)
        assert "jsonpickle" in sys.modules  # the control: a tuple needs it
    """
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(serdes.__file__).parent.parent)


def test_strings_mentioning_tags_stay_strings():
    for value in ["py/reduce", ['"py/object"'], {"k": '{"py/reduce": 1}'}, "json://1"]:
        assert roundtrip(value) == value


def test_plain_dicts_with_reserved_keys_round_trip_as_data():
    value = {"py/reduce": [{"py/function": "tests.test_serdes.canary"}, {"py/tuple": ["x"]}], "json://1": 2}
    text = DEFAULT_SERDES.serialize(value, CTX)
    assert roundtrip(value) == value
    assert json.loads(text) != value  # it was escaped, not stored bare
    assert roundtrip([{"py/object": "os.system"}]) == [{"py/object": "os.system"}]


def test_subclasses_of_plain_types_are_not_flattened():
    assert roundtrip(Level.HIGH) is Level.HIGH
    od = collections.OrderedDict(a=1)
    with pytest.raises(SerDesError):  # not an allowed class: refused, not silently turned into a dict
        DEFAULT_SERDES.serialize(od, CTX)


# ----------------------------------------------------------------------------- allowed types


ALLOWED_VALUES = [
    dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
    dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc),
    dt.datetime(2024, 1, 2, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30), "IST")),
    dt.datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=zoneinfo.ZoneInfo("America/New_York")),
    dt.date(2024, 2, 29),
    dt.time(23, 59, 59, 1),
    dt.time(8, 0, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    dt.timedelta(days=-1, seconds=5, microseconds=7),
    dt.timezone.utc,
    dt.timezone(dt.timedelta(hours=2), "CEST"),
    decimal.Decimal("1.10"),
    decimal.Decimal("-1E+3"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"\x00\xffbytes",
    {1, 2, 3},
    frozenset({"a", (1, 2)}),
    (1, "two", None),
    (),
    Color.RED,
    Color.PAIR,
    Level.HIGH,
    Perm.R | Perm.W,
    Point(1, 2),
    Pair(3),
    Frozen(1, (2, 3)),
    Registered(5),
    {1: "int key", (1, 2): "tuple key"},
    {"nested": [(1, 2), {3}, dt.date(2020, 1, 1)]},
]


@pytest.mark.parametrize("value", ALLOWED_VALUES, ids=lambda v: type(v).__name__)
def test_allowed_types_round_trip(value):
    text = DEFAULT_SERDES.serialize(value, CTX)
    assert "py/reduce" not in text and "py/type" not in text
    back = DEFAULT_SERDES.deserialize(text, CTX)
    assert back == value
    assert type(back) is type(value)
    if isinstance(value, (dt.datetime, dt.time)):
        assert back.tzinfo == value.tzinfo and back.fold == value.fold
        assert back.tzname() == value.tzname()


def test_decimal_nan_round_trips():
    assert roundtrip(decimal.Decimal("NaN")).is_nan()


def test_user_dataclass_comes_back_as_that_dataclass():
    order = Order(7, dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc), [Point(1, 2), Color.RED], decimal.Decimal("9.99"))
    back = roundtrip(order)
    assert isinstance(back, Order)
    assert back == order
    assert type(back.items[0]) is Point and back.items[1] is Color.RED


def test_shared_references_and_cycles_survive():
    when = dt.datetime(2020, 1, 1)
    order = Order(1, when)
    back = roundtrip([order, order, when])
    assert back[0] is back[1] and back[0].placed == when
    loop: list = [1]
    loop.append(loop)
    back = roundtrip(loop)
    assert back[0] == 1 and back[1] is back


def test_freezegun_datetimes_decode_as_real_datetimes():
    with freeze_time("2024-05-01 12:00:00"):
        now, today = dt.datetime.now(), dt.date.today()
        back = roundtrip([now, today])
    assert back == [dt.datetime(2024, 5, 1, 12), dt.date(2024, 5, 1)]


def test_allow_registers_local_classes_and_checks_arguments():
    class Local:
        def __init__(self):
            self.v = [1, (2, 3)]

    with pytest.raises(SerDesError, match="allow"):
        DEFAULT_SERDES.serialize(Local(), CTX)
    assert serdes.allow(Local) is Local
    back = roundtrip(Local())
    assert type(back) is Local and back.v == [1, (2, 3)]
    with pytest.raises(ValidationError):
        serdes.allow("not a class")


def test_unregistered_user_class_is_refused_with_advice():
    with pytest.raises(SerDesError) as info:
        serialize_value(None, Plain(), CTX)
    message = str(info.value)
    assert "op-123" in message and "Plain" in message and "ds.serdes.allow" in message


# ----------------------------------------------------------------------------- attacks


def _payloads(tmp_path: pathlib.Path) -> dict[str, str]:
    pwned = tmp_path / "pwned"
    cmd = f"touch {pwned}"
    canary_name = f"{__name__}.canary"
    return {
        "reduce-os-system": json.dumps({"py/reduce": [{"py/function": "os.system"}, {"py/tuple": [cmd]}]}),
        "reduce-type": json.dumps({"py/reduce": [{"py/type": "subprocess.Popen"}, {"py/tuple": [["touch", str(pwned)]]}]}),
        "reduce-canary": json.dumps({"py/reduce": [{"py/function": canary_name}, {"py/tuple": ["x"]}]}),
        "function": json.dumps({"py/function": canary_name}),
        "type": json.dumps({"py/type": "subprocess.Popen"}),
        "mod": json.dumps({"py/mod": "os/os"}),
        "repr": json.dumps({"py/repr": f"os/os.system({cmd!r})"}),
        "iterator": json.dumps({"py/iterator": [1]}),
        "ref": json.dumps({"py/ref": "/"}),
        "bytes-tag": json.dumps({"py/bytes": "x"}),
        "newobj": json.dumps({"py/object": "datetime.date", "py/newobj": [1]}),
        "initargs": json.dumps({"py/object": "datetime.date", "py/initargs": [2020, 1, 1]}),
        "newargsex": json.dumps({"py/object": f"{__name__}.Order", "py/newargsex": [[], {}]}),
        "state-without-object": json.dumps({"py/state": {"a": 1}}),
        "object-popen": json.dumps({"py/object": "subprocess.Popen", "py/newargs": {"py/tuple": [["touch", str(pwned)]]}}),
        "object-function": json.dumps({"py/object": "os.system"}),
        "object-canary": json.dumps({"py/object": canary_name}),
        "object-builtin": json.dumps({"py/object": "builtins.object"}),
        "object-not-a-string": json.dumps({"py/object": ["os", "system"]}),
        "nested-in-dataclass": json.dumps(
            {"py/object": f"{__name__}.Order", "id": {"py/reduce": [{"py/function": canary_name}, {"py/tuple": []}]}}
        ),
        "nested-in-list": json.dumps([1, {"a": {"py/function": canary_name}}]),
        "in-json-key": json.dumps({"json://" + json.dumps({"py/reduce": [{"py/function": canary_name}, {"py/tuple": []}]}): 1}),
        "default-factory": json.dumps({"py/object": f"{__name__}.Order", "default_factory": {"py/function": canary_name}}),
    }


def test_every_attack_payload_is_refused_and_nothing_runs(tmp_path):
    for name, text in _payloads(tmp_path).items():
        with pytest.raises(SerDesError) as info:
            DEFAULT_SERDES.deserialize(text, CTX)
        message = str(info.value)
        assert "allow" in message or "refuse" in message, (name, message)
    assert not (tmp_path / "pwned").exists()
    assert CANARY == []


@pytest.mark.parametrize("tag", ["py/reduce", "py/function", "py/repr", "py/type", "py/mod"])
def test_refusal_names_the_tag_and_how_to_allow(tag):
    with pytest.raises(SerDesError) as info:
        DEFAULT_SERDES.deserialize(json.dumps({tag: "os.system"}), CTX)
    assert repr(tag) in str(info.value) and "ds.serdes.allow" in str(info.value)


def test_refusal_names_the_class():
    with pytest.raises(SerDesError, match=r"'subprocess\.Popen'.*ds\.serdes\.allow"):
        DEFAULT_SERDES.deserialize('{"py/object": "subprocess.Popen"}', CTX)


def test_payload_never_imports_a_module(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "ds_canary_pkg").mkdir()
    (tmp_path / "ds_canary_pkg" / "__init__.py").write_text("")
    (tmp_path / "ds_canary_pkg" / "evil.py").write_text(
        f"import pathlib, dataclasses\npathlib.Path({str(marker)!r}).write_text('x')\n"
        "@dataclasses.dataclass\nclass Thing:\n    x: int = 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import ds_canary_pkg  # noqa: F401  (the package is loaded, its submodule is not)

    for name in ["ds_canary_pkg.evil.Thing", "ds_canary_pkg.evil", "ds_canary_mod_absent.Thing"]:
        with pytest.raises(SerDesError, match="never imports"):
            DEFAULT_SERDES.deserialize(json.dumps({"py/object": name}), CTX)
    assert "ds_canary_pkg.evil" not in sys.modules
    assert not marker.exists()
    monkeypatch.delitem(sys.modules, "ds_canary_pkg")


def test_plain_json_decoder_never_interprets_tags():
    text = json.dumps({"py/reduce": [{"py/function": f"{__name__}.canary"}, {"py/tuple": ["x"]}]})
    assert decode_plain_json(text, "callback result") == json.loads(text)
    assert decode_plain_json(b'{"a": [1]}', "input event") == {"a": [1]}
    assert decode_plain_json(None, "x") is None and decode_plain_json("", "x") is None
    with pytest.raises(SerDesError, match="invoke result"):
        decode_plain_json("{nope", "invoke result")


# ----------------------------------------------------------------------------- entry points


@pytest.mark.parametrize("value", [lambda: 1, threading.Lock(), object(), (i for i in range(2)), print, sys,
                                   {"nested": [threading.Lock()]}])
def test_live_objects_and_code_get_return_plain_data_advice(value):
    with pytest.raises(SerDesError) as info:
        serialize_value(None, value, CTX)
    message = str(info.value)
    assert "op-123" in message
    assert type(value).__name__ in message
    assert "cannot be checkpointed" in message and "Return plain data" in message
    assert "ds.serdes.allow" not in message  # registering a lock or a function would not help
    if isinstance(value, dict):
        assert "a _thread.lock inside the dict" in message


def test_serialization_errors_name_the_operation_by_its_name():
    named = SerDesContext("0" * 64, CTX.durable_execution_arn, "make-lock")
    with pytest.raises(SerDesError) as info:
        serialize_value(None, threading.Lock(), named)
    assert "operation 'make-lock'" in str(info.value) and "0" * 64 not in str(info.value)


def test_a_durable_step_passed_uncalled_is_told_to_call_it():
    import durable_sync as ds

    @ds.durable_step
    def reserve(step, order_id, qty=1):
        return order_id

    returned = reserve(object())  # what `ctx.step(reserve)` runs: reserve bound to the step context alone
    with pytest.raises(SerDesError) as info:
        serialize_value(None, returned, SerDesContext("x", CTX.durable_execution_arn, "reserve"))
    assert "call it: ctx.step(reserve(order_id, qty))" in str(info.value)


class UpperSerDes:
    def serialize(self, value, ctx):
        return json.dumps(value).upper()

    def deserialize(self, text, ctx):
        return json.loads(text.lower())


class BadSerDes:
    def serialize(self, value, ctx):
        return b"bytes"

    def deserialize(self, text, ctx):
        raise ValueError("broken")


def test_entry_points_use_custom_or_default_serdes():
    assert isinstance(UpperSerDes(), SerDes) and isinstance(DEFAULT_SERDES, SerDes)
    assert serialize_value(UpperSerDes(), "ab", CTX) == '"AB"'
    assert deserialize_value(UpperSerDes(), '"AB"', CTX) == "ab"
    assert serialize_value(None, ("a",), CTX) == '{"py/tuple":["a"]}'
    assert deserialize_value(None, '{"py/tuple":["a"]}', CTX) == ("a",)
    assert deserialize_value(None, None, CTX) is None
    assert deserialize_value(BadSerDes(), None, CTX) is None


def test_custom_serdes_failures_become_serdes_errors():
    with pytest.raises(SerDesError, match=r"'op-123'.*must return str"):
        serialize_value(BadSerDes(), 1, CTX)
    with pytest.raises(SerDesError, match=r"'op-123'.*broken") as info:
        deserialize_value(BadSerDes(), "1", CTX)
    assert isinstance(info.value.__cause__, ValueError)
    with pytest.raises(SerDesError, match="op-123"):
        deserialize_value(None, "{not json", CTX)
    with pytest.raises(SerDesError, match="op-123"):
        deserialize_value(None, '{"py/reduce": []}', CTX)


def test_jsonpickle_is_used_only_by_serdes():
    package = pathlib.Path(serdes.__file__).parent
    users = [p.name for p in package.rglob("*.py") if "jsonpickle" in p.read_text() and p.name != "serdes.py"]
    assert users == []


# ----------------------------------------------------------------------------- keys that look like tags

from hypothesis import given, settings, strategies as st  # noqa: E402


@dataclasses.dataclass
class Envelope:
    """Outside data kept in a dataclass field (the case that used to be changed silently)."""

    data: typing.Any
    tag: tuple = (1, "t")


TAG_LIKE_KEYS = ["py/reduce", "py/b64", "py/b85", "py/object", "py/tuple", "py/set", "py/id", "py/state",
                 "py/newargs", "py/seq", "py/function", "py/type", "py/mod", "py/repr", "py/iterator", "py/ref",
                 "py/", "py/=", "py/=py/reduce", "py/durable_sync.plain", "json://1", 'json://"x"', "json://"]
KEYS = st.one_of(st.sampled_from(TAG_LIKE_KEYS), st.text(max_size=6),
                 st.text(max_size=6).map(lambda s: "py/" + s), st.text(max_size=6).map(lambda s: "json://" + s))
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=6),
                   st.sampled_from(TAG_LIKE_KEYS))
JSON_DATA = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
                         max_leaves=25)


def shape(value):
    """``value`` with every dict turned into its ordered item list, so key order is compared too."""
    if isinstance(value, dict):
        return ("dict", [(k, shape(v)) for k, v in value.items()])
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [shape(v) for v in value])
    if dataclasses.is_dataclass(value):
        return (type(value).__name__, [(f.name, shape(getattr(value, f.name))) for f in dataclasses.fields(value)])
    return (type(value).__name__, value)


@settings(max_examples=300, deadline=None)
@given(JSON_DATA)
def test_plain_data_with_tag_like_keys_round_trips_exactly(data):
    assert shape(roundtrip(data)) == shape(data)


@settings(max_examples=300, deadline=None)
@given(JSON_DATA, st.sampled_from(["dataclass", "tuple", "dict-with-tuple", "list-of-dataclasses"]))
def test_tag_like_keys_round_trip_exactly_inside_rich_values(data, wrapper):
    value = {"dataclass": lambda: Envelope(data),
             "tuple": lambda: (data, {"py/reduce": data}),
             "dict-with-tuple": lambda: {"py/object": data, "t": (1,), "json://k": data},
             "list-of-dataclasses": lambda: [Envelope(data), Envelope({"py/b64": data}, tag=("py/id",))]}[wrapper]()
    back = roundtrip(value)
    assert shape(back) == shape(value)
    assert CANARY == []


@pytest.mark.parametrize("data", [
    {"py/reduce": [{"py/function": f"{__name__}.canary"}, {"py/tuple": ["x"]}]},
    {"py/b64": "aGVsbG8="},
    {"py/object": f"{__name__}.Order", "id": 1},
    {"py/id": 1},
    {"py/tuple": [1, 2]},
    {"a": 1, "py/set": [1], "b": {"json://1": {"py/=x": 2}}},
])
def test_outside_data_in_a_dataclass_is_not_read_as_tags(data):
    # Before: {"py/reduce": ...} came back as {} and {"py/b64": ...} as bytes.
    text = DEFAULT_SERDES.serialize(Envelope(data), CTX)
    back = DEFAULT_SERDES.deserialize(text, CTX)
    assert back == Envelope(data) and shape(back) == shape(Envelope(data))


def test_serdes_leaves_jsonpickles_global_handler_registry_alone():
    code = """if True:
        import datetime, decimal, enum, uuid
        import jsonpickle, jsonpickle.handlers as h
        before = (dict(h.registry._handlers), dict(h.registry._base_handlers))
        from durable_sync.serdes import DEFAULT_SERDES as S

        class Color(enum.Enum):
            RED = 1

        values = [datetime.datetime(2024, 1, 2, 3, 4, 5), datetime.date(2024, 1, 2), datetime.timedelta(3),
                  decimal.Decimal("1.5"), uuid.UUID(int=5), frozenset({1}), Color.RED]
        for value in values:
            assert S.deserialize(S.serialize(value, None), None) == value
        after = (dict(h.registry._handlers), dict(h.registry._base_handlers))
        assert after == before, set(after[0]) ^ set(before[0])
        # Another library's use of jsonpickle sees jsonpickle's own behaviour, not ours.
        assert jsonpickle.decode(jsonpickle.encode(datetime.date(2024, 1, 2))) == datetime.date(2024, 1, 2)
        assert "durable_sync" not in jsonpickle.encode(Color.RED)
    """
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(serdes.__file__).parent.parent)


def test_serdes_protocol_is_generic_and_subclassable():
    class Upper(SerDes[str]):
        def serialize(self, value, ctx):
            return json.dumps(value.upper())

        def deserialize(self, text, ctx):
            return json.loads(text)

    assert isinstance(Upper(), SerDes) and SerDes[int] is not None
    assert deserialize_value(Upper(), serialize_value(Upper(), "ab", CTX), CTX) == "AB"
    assert SerDesContext() == SerDesContext("", "")  # the official SDK's defaults


def test_serdes_context_is_an_immutable_value():
    ctx = SerDesContext("op-1", CTX.durable_execution_arn, operation_name="charge")
    assert (ctx.operation_id, ctx.durable_execution_arn, ctx.operation_name) == \
        ("op-1", CTX.durable_execution_arn, "charge")
    assert ctx == SerDesContext(operation_id="op-1", durable_execution_arn=CTX.durable_execution_arn,
                                operation_name="charge")
    assert hash(ctx) == hash(SerDesContext("op-1", CTX.durable_execution_arn, "charge"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.operation_id = "op-2"
    assert dataclasses.replace(ctx, operation_name=None) == SerDesContext("op-1", CTX.durable_execution_arn)


def test_official_json_and_pass_through_serdes():
    assert serdes.JsonSerDes().deserialize(serdes.JsonSerDes().serialize({"py/reduce": [1]}, CTX), CTX) == \
        {"py/reduce": [1]}
    assert serdes.PassThroughSerDes().serialize("raw text", CTX) == "raw text"
    assert serdes.PassThroughSerDes().deserialize("raw text", CTX) == "raw text"


def test_decimal_and_uuid_are_decoded_in_a_process_that_never_imported_them():
    # Encoded here; decoded by a fresh interpreter where decimal and uuid are not loaded yet.
    text = DEFAULT_SERDES.serialize([decimal.Decimal("1.25"), uuid.UUID(int=7)], CTX)
    code = f"""if True:
        import sys
        from durable_sync.serdes import DEFAULT_SERDES as S
        assert "decimal" not in sys.modules and "uuid" not in sys.modules
        value = S.deserialize({text!r}, None)
        import decimal, uuid
        assert value == [decimal.Decimal("1.25"), uuid.UUID(int=7)], value
    """
    subprocess.run([sys.executable, "-c", code], check=True, cwd=pathlib.Path(serdes.__file__).parent.parent)


# ----------------------------------------------------------------------------- what the first run returns

EXACT_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.text(), st.text().map(lambda s: s + "\ud800"),
                          st.sampled_from(TAG_LIKE_KEYS + ['{"t": 1, "v": 2}', '{"py/reduce": []}', '"py/x"']))


@given(EXACT_SCALARS)
@settings(max_examples=300, deadline=None)
def test_as_replayed_returns_what_a_replay_decodes(value):
    """A step returns ``as_replayed`` on its first run and the decoded text on replay: the same value."""
    text = serialize_value(None, value, CTX)
    first_run = serdes.as_replayed(None, value, text, CTX)
    replay = deserialize_value(None, text, CTX)
    assert type(first_run) is type(replay) and first_run == replay


def test_as_replayed_decodes_everything_a_custom_serdes_writes():
    class Upper:
        def serialize(self, value, ctx):
            return json.dumps(value.upper())

        def deserialize(self, text, ctx):
            return json.loads(text).lower()

    # the first run sees what replays will see, not the value the body returned
    assert serdes.as_replayed(Upper(), "MiXed", Upper().serialize("MiXed", CTX), CTX) == "mixed"
    # and a value the default serdes does not store exactly is decoded too
    value = (1, 2)
    assert serdes.as_replayed(None, value, serialize_value(None, value, CTX), CTX) == deserialize_value(
        None, serialize_value(None, value, CTX), CTX)
