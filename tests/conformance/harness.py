"""Conformance harness: load a requirement YAML, run its handler on the local engine, match.

The requirement files are read in place (``DURABLE_CONFORMANCE_DIR``, default
``<repo>/../shared/conformance``); see that directory's README for the format and the
matching rules implemented here:

- each expected event is matched to the actual event with the same ``EventId``;
- dicts match as subsets, but every expected key must exist in the actual value;
  ``{}`` and ``'*'`` mean "any value, key present";
- ``${NAME}`` as a whole value binds on first sight and must be equal afterwards;
  ``${/re/}`` is ``re.search`` on ``str(value)``; other strings are compared after
  substituting bound names;
- lists have the same length and match element by element; integers stay integers
  (``1`` does not match ``"1"``, ``True`` or ``1.0``); payloads are stored text.

Only the matcher, the loader and the variable binding are free of durable_sync; the
engine is imported when a requirement is run.
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import string
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE_ENV = "DURABLE_CONFORMANCE_DIR"
SEED_ENV = "DURABLE_CONFORMANCE_SEED"

SUITES = ("step", "wait", "child", "callback", "wait_for_condition", "parallel", "plugin")
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "STOPPED"})

#: Virtual seconds between two looks at the history of an ``AsyncInvoke`` requirement.
POLL_SECONDS = 2
#: Bound on polls of an ``AsyncInvoke`` requirement (600 virtual seconds).
MAX_POLLS = 300

_VAR_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_WHOLE_VAR_RE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_WHOLE_REGEX_RE = re.compile(r"^\$\{/(.*)/\}$", re.DOTALL)
_GEN_STR_RE = re.compile(r"^\$\{GEN_STR:(\d+)\}$")
_ALPHABET = string.ascii_lowercase + string.digits
_ANY = "*"
_MISSING = object()


# --------------------------------------------------------------------------- loading


def conformance_dir() -> Path:
    """Where the requirement files live (they are never copied into the project)."""
    configured = os.environ.get(CONFORMANCE_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "conformance").resolve()


def _natural_key(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Requirement:
    suite: str
    rid: str  # e.g. "1-11"
    path: Path

    @property
    def test_id(self) -> str:
        return f"{self.suite}/{self.rid}"

    def load(self) -> dict[str, Any]:
        return load_requirement(self.path)


def discover(root: Optional[Path] = None) -> list[Requirement]:
    """Every requirement file, suite by suite in the README's order, ids in natural order."""
    root = conformance_dir() if root is None else root
    found: list[Requirement] = []
    for suite in SUITES:
        directory = root / suite
        if not directory.is_dir():
            continue
        paths = sorted(directory.glob("*.yaml"), key=lambda p: _natural_key(p.stem))
        found.extend(Requirement(suite, p.stem, p) for p in paths)
    return found


def load_requirement(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a requirement file must hold a mapping, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------- variables


def make_rng(seed: Optional[str] = None) -> tuple[random.Random, str]:
    """A RNG for ``${GEN_STR:N}``; the seed comes from ``DURABLE_CONFORMANCE_SEED`` if set."""
    if seed is None:
        seed = os.environ.get(SEED_ENV) or "".join(random.SystemRandom().choice(_ALPHABET) for _ in range(12))
    return random.Random(seed), seed


def bind_variables(variables: Optional[dict[str, Any]], rng: Optional[random.Random] = None) -> dict[str, Any]:
    """``NAME: ${GEN_STR:N}`` binds a random ``[a-z0-9]{N}``; any other value binds literally
    (after substituting names bound before it)."""
    rng = rng or random.Random()
    bound: dict[str, Any] = {}
    for name, value in (variables or {}).items():
        if isinstance(value, str):
            gen = _GEN_STR_RE.match(value.strip())
            if gen:
                bound[name] = "".join(rng.choice(_ALPHABET) for _ in range(int(gen.group(1))))
                continue
        bound[name] = substitute(value, bound)
    return bound


def substitute(value: Any, bindings: dict[str, Any], *, regex: bool = False) -> Any:
    """Replace ``${NAME}`` for bound names, deeply. Unbound names are left as they are.

    A string that is exactly ``${NAME}`` becomes the bound value itself (keeping its type);
    inside a longer string the value is inserted as text (``re.escape``d when ``regex``).
    """
    if isinstance(value, dict):
        return {k: substitute(v, bindings, regex=regex) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, bindings, regex=regex) for v in value]
    if not isinstance(value, str):
        return value
    whole = _WHOLE_VAR_RE.match(value)
    if whole and whole.group(1) in bindings and not regex:
        return bindings[whole.group(1)]

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in bindings:
            return m.group(0)
        text = bindings[name] if isinstance(bindings[name], str) else json.dumps(bindings[name])
        return re.escape(text) if regex else text

    return _VAR_RE.sub(repl, value)


# --------------------------------------------------------------------------- matching


def _fmt_path(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, default=str, sort_keys=False) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _type_name(value: Any) -> str:
    return type(value).__name__


class MatchError(AssertionError):
    """A mismatch at ``path`` (a tuple of keys / indexes)."""

    def __init__(self, path: tuple[Any, ...], reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"at {_fmt_path(path)}: {reason}")


class Matcher:
    """The README's matching rules, with the ``${NAME}`` bindings of one requirement run."""

    def __init__(self, bindings: Optional[dict[str, Any]] = None):
        self.bindings: dict[str, Any] = dict(bindings or {})

    def copy(self) -> "Matcher":
        return Matcher(self.bindings)

    def match(self, expected: Any, actual: Any, path: tuple[Any, ...] = ()) -> None:
        """Raise MatchError at the first mismatch; bind names on first sight."""
        if isinstance(expected, dict):
            if not expected:  # {}: any value, key present (presence is checked by the caller)
                return
            if not isinstance(actual, dict):
                raise MatchError(path, f"expected a mapping, got {_type_name(actual)} {_short(actual)}")
            for key, exp in expected.items():
                if key not in actual:
                    raise MatchError(
                        path + (key,), f"expected key {key!r} is missing (actual keys: {sorted(actual)})"
                    )
                self.match(exp, actual[key], path + (key,))
            return
        if isinstance(expected, list):
            if not isinstance(actual, list):
                raise MatchError(path, f"expected a list, got {_type_name(actual)} {_short(actual)}")
            if len(expected) != len(actual):
                raise MatchError(
                    path, f"expected a list of {len(expected)} items, got {len(actual)}: {_short(actual)}"
                )
            for index, (exp, act) in enumerate(zip(expected, actual)):
                self.match(exp, act, path + (index,))
            return
        if isinstance(expected, str):
            self._match_str(expected, actual, path)
            return
        self._match_scalar(expected, actual, path)

    def _match_str(self, expected: str, actual: Any, path: tuple[Any, ...]) -> None:
        if expected == _ANY:
            return
        var = _WHOLE_VAR_RE.match(expected)
        if var:
            name = var.group(1)
            if name not in self.bindings:
                self.bindings[name] = actual
                return
            bound = self.bindings[name]
            if not _strict_equal(bound, actual):
                raise MatchError(
                    path, f"${{{name}}} is bound to {_short(bound)} but the actual value is {_short(actual)}"
                )
            return
        rx = _WHOLE_REGEX_RE.match(expected)
        if rx:
            pattern = substitute(rx.group(1), self.bindings, regex=True)
            if re.search(pattern, str(actual)) is None:
                raise MatchError(path, f"{_short(actual)} does not match /{pattern}/")
            return
        want = substitute(expected, self.bindings)
        unbound = _VAR_RE.findall(want) if isinstance(want, str) else []
        if unbound:
            raise MatchError(path, f"names {unbound} are not bound in expected {expected!r}")
        if not isinstance(actual, str):
            raise MatchError(path, f"expected the string {want!r}, got {_type_name(actual)} {_short(actual)}")
        if actual != want:
            raise MatchError(path, f"expected {want!r}, got {actual!r}")

    @staticmethod
    def _match_scalar(expected: Any, actual: Any, path: tuple[Any, ...]) -> None:
        if not _strict_equal(expected, actual):
            raise MatchError(
                path,
                f"expected {_type_name(expected)} {_short(expected)}, got {_type_name(actual)} {_short(actual)}",
            )


def _strict_equal(a: Any, b: Any) -> bool:
    """Equality that keeps JSON types apart: 1 != True != "1"; 1 == 1.0 only for floats."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int) and not isinstance(a, float):
        return isinstance(b, int) and not isinstance(b, float) and a == b
    if isinstance(a, float):
        return isinstance(b, (int, float)) and a == b
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_strict_equal(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_strict_equal(x, y) for x, y in zip(a, b))
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and a == b


def compare_exact(expected: Any, actual: Any, path: tuple[Any, ...] = ("Result",)) -> None:
    """Exact comparison of decoded JSON values (ExpectedResult.Result), with a path on failure."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            raise MatchError(path, f"expected a mapping, got {_type_name(actual)} {_short(actual)}")
        missing = [k for k in expected if k not in actual]
        extra = [k for k in actual if k not in expected]
        if missing or extra:
            raise MatchError(path, f"keys differ: missing {missing}, unexpected {extra}; actual {_short(actual)}")
        for key in expected:
            compare_exact(expected[key], actual[key], path + (key,))
        return
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(expected) != len(actual):
            raise MatchError(path, f"expected {_short(expected)}, got {_short(actual)}")
        for index, (exp, act) in enumerate(zip(expected, actual)):
            compare_exact(exp, act, path + (index,))
        return
    if not _strict_equal(expected, actual):
        raise MatchError(
            path, f"expected {_type_name(expected)} {_short(expected)}, got {_type_name(actual)} {_short(actual)}"
        )


# --------------------------------------------------------------------------- history


def _event_id(event: dict[str, Any]) -> Any:
    return event.get("EventId")


def history_table(events: Iterable[dict[str, Any]]) -> str:
    """A compact one-line-per-event view of an actual history, for failure messages."""
    lines = []
    for ev in events:
        details = {k: v for k, v in ev.items() if k.endswith("Details")}
        detail_text = _short(details, 160) if details else ""
        lines.append(
            "  {id:>3} {type:<22} {sub:<18} id={oid:<10} parent={pid:<10} name={name!r} {details}".format(
                id=str(ev.get("EventId")),
                type=str(ev.get("EventType")),
                sub=str(ev.get("SubType", "")),
                oid=str(ev.get("Id", ""))[:8],
                pid=str(ev.get("ParentId", ""))[:8],
                name=ev.get("Name"),
                details=detail_text,
            )
        )
    return "\n".join(lines)


def _pretty(value: Any) -> str:
    return json.dumps(value, default=str, indent=2, sort_keys=False)


def history_mismatches(
    expected_events: list[dict[str, Any]], actual_events: list[dict[str, Any]], matcher: Matcher
) -> list[str]:
    """Match every expected event against the actual event with its EventId.

    Returns one message per mismatching expected event (empty when all match); each shows
    the expected event, the actual event and the path of the mismatch.
    """
    by_id = {_event_id(ev): ev for ev in actual_events}
    problems: list[str] = []
    for expected in expected_events:
        eid = expected.get("EventId")
        actual = by_id.get(eid)
        if actual is None:
            problems.append(
                f"EventId {eid}: no actual event with this id (history has {len(actual_events)} events)\n"
                f"expected event:\n{_pretty(expected)}"
            )
            continue
        try:
            matcher.match(expected, actual, (f"event[EventId={eid}]",))
        except MatchError as exc:
            problems.append(
                f"EventId {eid} ({expected.get('EventType')}): mismatch {exc}\n"
                f"expected event:\n{_pretty(expected)}\nactual event:\n{_pretty(actual)}"
            )
    return problems


def assert_history(
    expected_events: list[dict[str, Any]], actual_events: list[dict[str, Any]], matcher: Matcher, label: str = ""
) -> None:
    problems = history_mismatches(expected_events, actual_events, matcher)
    if problems:
        raise AssertionError(
            f"{label}history does not match ({len(problems)} of {len(expected_events)} expected events differ)\n\n"
            + problems[0]
            + ("\n\nother mismatching EventIds: " + ", ".join(p.split(":", 1)[0] for p in problems[1:]) if problems[1:] else "")
            + f"\n\nactual history:\n{history_table(actual_events)}"
        )


# --------------------------------------------------------------------------- logs


class LogCapture(logging.Handler):
    """Captures log records of a run as JSON lines in a file, and the JSON lines written to stdout.

    A file (appended per record, unbuffered) rather than a list, so that records emitted by
    a forked handler process (``isolation="process"``) right before ``os._exit`` survive.
    Each line is ``durable_sync.JsonFormatter``'s output when the SDK provides it, merged
    over ``{"level", "message", "logger"}``, so ``message`` is always there. A line printed to
    ``sys.stdout`` that is a JSON object (the plugin suite's plugins print theirs) is a record
    too, in the order it was written; other output goes on to the real stdout.
    """

    def __init__(self, path: Optional[Path] = None, level: int = logging.INFO):
        super().__init__(level)
        if path is None:
            fd, name = tempfile.mkstemp(prefix="durable-conformance-", suffix=".jsonl")
            os.close(fd)
            path = Path(name)
        self.path = path
        self._json_formatter = _sdk_json_formatter()
        self._root_level: Optional[int] = None
        self._stdout: Optional[_StdoutTee] = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line: dict[str, Any] = {"level": record.levelname, "message": record.getMessage(), "logger": record.name}
            arn = getattr(record, "execution_arn", None)
            if arn is not None:
                line["executionArn"] = arn
            if self._json_formatter is not None:
                try:
                    sdk_line = json.loads(self._json_formatter.format(record))
                    if isinstance(sdk_line, dict):
                        line.update(sdk_line)
                except Exception:  # noqa: BLE001 - the SDK formatter is work in progress
                    pass
            self.append(line)
        except Exception:  # noqa: BLE001
            self.handleError(record)

    def append(self, line: dict[str, Any]) -> None:
        """Add one record (a JSON object) to the file."""
        data = (json.dumps(line, default=str) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)

    def __enter__(self) -> "LogCapture":
        root = logging.getLogger()
        self._root_level = root.level
        if root.getEffectiveLevel() > self.level:
            root.setLevel(self.level)
        root.addHandler(self)
        self._stdout = _StdoutTee(sys.stdout, self.append)
        sys.stdout = self._stdout
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stdout is not None:
            self._stdout.flush()
            sys.stdout = self._stdout.target
            self._stdout = None
        root = logging.getLogger()
        root.removeHandler(self)
        if self._root_level is not None:
            root.setLevel(self._root_level)

    def lines(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for raw in self.path.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                out.append(json.loads(raw))
        return out

    def cleanup(self) -> None:
        try:
            self.path.unlink()
        except OSError:
            pass


class _StdoutTee:
    """Stands in for ``sys.stdout``: complete lines that are JSON objects go to ``sink``, the rest to
    ``target``. Lines are assembled per thread, so concurrent ``print`` calls do not mix."""

    def __init__(self, target: Any, sink: Callable[[dict[str, Any]], None]):
        self.target = target
        self._sink = sink
        self._lock = threading.Lock()
        self._partial: dict[int, str] = {}

    def write(self, text: str) -> int:
        with self._lock:
            key = threading.get_ident()
            buffered = self._partial.pop(key, "") + text
            *complete, rest = buffered.split("\n")
            if rest:
                self._partial[key] = rest
            for raw in complete:
                self._line(raw)
        return len(text)

    def _line(self, raw: str) -> None:
        try:
            value = json.loads(raw)
        except ValueError:
            value = None
        if isinstance(value, dict):
            self._sink(value)
        else:
            self.target.write(raw + "\n")

    def flush(self) -> None:
        with self._lock:
            for raw in self._partial.values():
                self._line(raw)
            self._partial.clear()
        self.target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


def _sdk_json_formatter() -> Optional[logging.Formatter]:
    try:
        import durable_sync

        formatter_cls = getattr(durable_sync, "JsonFormatter", None)
        return formatter_cls() if formatter_cls is not None else None
    except Exception:  # noqa: BLE001
        return None


_ARN_KEYS = ("executionArn", "durableExecutionArn")


def _line_arn(line: dict[str, Any]) -> Optional[str]:
    return next((line[k] for k in _ARN_KEYS if line.get(k)), None)


def execution_log_lines(lines: list[dict[str, Any]], arn: Optional[str]) -> list[dict[str, Any]]:
    """The lines of one execution: when records carry an execution ARN (``executionArn``, or the
    plugins' ``durableExecutionArn``), only that ARN's."""
    if arn and any(_line_arn(line) for line in lines):
        return [line for line in lines if _line_arn(line) == arn]
    return lines


def _field_matches(expected: Any, actual: Any, bindings: dict[str, Any]) -> bool:
    if isinstance(expected, str) and len(expected) >= 2 and expected.startswith("/") and expected.endswith("/"):
        pattern = substitute(expected[1:-1], bindings, regex=True)
        return actual is not None and re.search(pattern, str(actual)) is not None
    if isinstance(expected, str):
        if expected == _ANY:
            return actual is not None
        rx = _WHOLE_REGEX_RE.match(expected)
        if rx:
            return actual is not None and re.search(substitute(rx.group(1), bindings, regex=True), str(actual)) is not None
    return _strict_equal(substitute(expected, bindings), actual)


def _record_matches(fields: dict[str, Any], line: dict[str, Any], bindings: dict[str, Any]) -> bool:
    return all(k in line and _field_matches(v, line[k], bindings) for k, v in fields.items())


def log_mismatches(expected_logs: list[dict[str, Any]], lines: list[dict[str, Any]], bindings: dict[str, Any]) -> list[str]:
    """Check ExpectedLogs (README): each rule's ``match`` selects records; ``count`` is the exact number
    of them, ``min_count`` the least (neither: at least one); with ``after``, every selected record
    comes after a record matching each of the ``after`` matchers."""
    problems = []
    for index, rule in enumerate(expected_logs or []):
        fields = rule.get("match") or {}
        shown = {k: substitute(v, bindings) for k, v in fields.items()}
        hits = [i for i, ln in enumerate(lines) if _record_matches(fields, ln, bindings)]
        want, least = rule.get("count"), rule.get("min_count")
        if want is not None and len(hits) != want:
            problems.append(f"ExpectedLogs[{index}] match {shown}: expected count {want}, got {len(hits)}")
        elif want is None and len(hits) < (1 if least is None else least):
            problems.append(f"ExpectedLogs[{index}] match {shown}: expected count >= "
                            f"{1 if least is None else least}, got {len(hits)}")
        for before in rule.get("after") or []:
            earlier = [i for i, ln in enumerate(lines) if _record_matches(before, ln, bindings)]
            late = [i for i in hits if not earlier or earlier[0] > i]
            if late:
                problems.append(
                    f"ExpectedLogs[{index}] match {shown}: record #{late[0]} is not after a record matching "
                    f"{ {k: substitute(v, bindings) for k, v in before.items()} }"
                    + (f" (first such record is #{earlier[0]})" if earlier else " (there is none)"))
    return problems


# --------------------------------------------------------------------------- engine


def status_text(status: Any) -> str:
    value = getattr(status, "value", status)
    return str(value if isinstance(value, str) else getattr(status, "name", value))


def raw_result(engine: Any, arn: str) -> Optional[str]:
    """The execution's result as the stored JSON text (``execution.raw_result``), falling back
    to ``json.dumps`` of the decoded result while the engine does not expose the raw text."""
    execution = engine.get_execution(arn)
    raw = getattr(execution, "raw_result", _MISSING)
    if raw is _MISSING:
        return json.dumps(getattr(execution, "result", None))
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8")
    return raw


def decoded_result(engine: Any, arn: str) -> Any:
    raw = raw_result(engine, arn)
    return None if raw is None or raw == "" else json.loads(raw)


def _callback_action_matches(pattern: str, name: Optional[str]) -> bool:
    if pattern == _ANY:
        return True
    rx = _WHOLE_REGEX_RE.match(pattern)
    if rx:
        return name is not None and re.search(rx.group(1), name) is not None
    return name == pattern


def effective_names(events: list[dict[str, Any]]) -> dict[str, Optional[str]]:
    """Operation id -> Name, where an unnamed child of a WaitForCallback context takes the
    context's Name (README: before callback actions are matched)."""
    names: dict[str, Optional[str]] = {}
    subtypes: dict[str, Optional[str]] = {}
    parents: dict[str, Optional[str]] = {}
    for ev in events:
        oid = ev.get("Id")
        if not oid:
            continue
        if ev.get("Name") is not None:
            names[oid] = ev["Name"]
        else:
            names.setdefault(oid, None)
        if ev.get("SubType") is not None:
            subtypes[oid] = ev["SubType"]
        if ev.get("ParentId") is not None:
            parents[oid] = ev["ParentId"]
    for oid, name in list(names.items()):
        parent = parents.get(oid)
        if name is None and parent and subtypes.get(parent) == "WaitForCallback":
            names[oid] = names.get(parent)
    return names


_CALLBACK_DONE = frozenset({"CallbackSucceeded", "CallbackFailed", "CallbackTimedOut"})


class CallbackDriver:
    """Applies ``CallbackActions`` to the callbacks an execution starts (README: AsyncInvoke)."""

    def __init__(self, engine: Any, actions: Optional[list[dict[str, Any]]], bindings: dict[str, Any]):
        self.engine = engine
        self.actions = [substitute(a, bindings) for a in (actions or [])]
        self.used: set[int] = set()
        self.seen: set[str] = set()  # operation ids of CallbackStarted events already handled
        self.open: dict[str, str] = {}  # operation id -> callback id, after a heartbeat
        self.log: list[str] = []

    def _take(self, name: Optional[str]) -> Optional[dict[str, Any]]:
        for index, action in enumerate(self.actions):
            if index not in self.used and _callback_action_matches(str(action.get("CallbackName", _ANY)), name):
                self.used.add(index)
                return action
        return None

    def step(self, events: list[dict[str, Any]]) -> bool:
        """Handle callbacks kept open by a heartbeat on an earlier poll, then new
        CallbackStarted events in history order. Returns True right after an action that
        completed a callback: its re-invocation changed the history, so the caller reads it
        again (and this resumes with the next callback) before time moves on."""
        names = effective_names(events)
        done = {ev.get("Id") for ev in events if ev.get("EventType") in _CALLBACK_DONE}
        for oid, callback_id in list(self.open.items()):
            del self.open[oid]
            action = None if oid in done else self._take(names.get(oid))
            if action is not None and self._apply(oid, callback_id, action):
                return True
        for ev in events:
            oid = ev.get("Id")
            if ev.get("EventType") != "CallbackStarted" or oid in self.seen:
                continue
            self.seen.add(oid)
            action = None if oid in done else self._take(names.get(oid))
            callback_id = (ev.get("CallbackStartedDetails") or {}).get("CallbackId")
            if action is not None and self._apply(oid, callback_id, action):
                return True
        return False

    def _apply(self, oid: str, callback_id: str, action: dict[str, Any]) -> bool:
        """Send one action after its Delay; True when it completed the callback."""
        delay = action.get("Delay") or 0
        if delay:
            self.engine.advance(delay)
        operation = str(action.get("Operation", "")).lower()
        self.log.append(f"{operation} {callback_id} after {delay}s ({action.get('CallbackName')})")
        if operation == "success":
            payload = json.dumps(action["Payload"]) if action.get("Payload") is not None else None
            self.engine.send_callback_success(callback_id, payload)
            return True
        elif operation == "failure":
            payload = action.get("Payload") or {}
            error = {k: payload[k] for k in ("ErrorType", "ErrorMessage", "ErrorData", "StackTrace") if k in payload}
            self.engine.send_callback_failure(callback_id, error)
            return True
        elif operation == "heartbeat":
            self.engine.send_callback_heartbeat(callback_id)
            self.open[oid] = callback_id
            return False
        else:
            raise ValueError(f"unknown callback action {action!r}")


@dataclass
class Outcome:
    """What a requirement run produced, for assertions and failure messages."""

    arn: str
    status: str
    result_text: Optional[str]
    error: Any
    history: list[dict[str, Any]]
    logs: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _execution_status(engine: Any, arn: str) -> str:
    return status_text(engine.get_execution(arn).status)


def run_requirement(
    data: dict[str, Any],
    handler: Callable[..., Any],
    engine: Any,
    *,
    name: str,
    bindings: dict[str, Any],
) -> Outcome:
    """Run one requirement's handler on ``engine`` as the file says and collect the outcome.

    Synchronous files go through ``engine.run``; ``AsyncInvoke`` files are started and then
    polled every ``POLL_SECONDS`` of virtual time while ``CallbackActions`` are applied.
    Files without ``ExpectedResult`` stop as soon as the history matches.
    """
    event_input = substitute(data.get("Input"), bindings)
    capture = LogCapture()
    notes: list[str] = []
    try:
        with capture:
            if data.get("AsyncInvoke"):
                arn = engine.start(handler, input=event_input, name=name)
                driver = CallbackDriver(engine, data.get("CallbackActions"), bindings)
                history_only = "ExpectedResult" not in data
                expected_events = data.get("ExpectedExecutionHistory") or []
                for _ in range(MAX_POLLS):
                    events = engine.history(arn)
                    if driver.step(events):
                        continue  # look again at once: the re-invocation may have started callbacks
                    if history_only and not history_mismatches(expected_events, events, Matcher(bindings)):
                        break
                    if _execution_status(engine, arn) in TERMINAL_STATUSES:
                        break
                    engine.advance(POLL_SECONDS)
                else:
                    notes.append(f"gave up after {MAX_POLLS} polls of {POLL_SECONDS}s")
                notes.extend(driver.log)
            else:
                arn = engine.run(handler, input=event_input, name=name).arn
        execution = engine.get_execution(arn)
        status = status_text(execution.status)
        text = raw_result(engine, arn) if status == "SUCCEEDED" else None
        history = engine.history(arn)
        logs = execution_log_lines(capture.lines(), arn)
        return Outcome(arn, status, text, getattr(execution, "error", None), history, logs, notes)
    finally:
        capture.cleanup()


def check_outcome(data: dict[str, Any], outcome: Outcome, bindings: dict[str, Any]) -> None:
    """Assert ExpectedResult, ExpectedExecutionHistory and ExpectedLogs of one requirement."""
    matcher = Matcher(bindings)
    context = (
        f"execution {outcome.arn}: status {outcome.status}, result {outcome.result_text!r}, "
        f"error {_short(outcome.error)}"
        + (f"\nnotes: {outcome.notes}" if outcome.notes else "")
        + f"\nvariables: {bindings}\n"
    )
    expected_result = data.get("ExpectedResult")
    if expected_result is not None:
        want_status = expected_result.get("ExecutionStatus")
        if want_status is not None and outcome.status != want_status:
            raise AssertionError(
                f"{context}ExecutionStatus: expected {want_status}, got {outcome.status}\n\n"
                f"actual history:\n{history_table(outcome.history)}"
            )
        if "Result" in expected_result:
            want = substitute(expected_result["Result"], bindings)
            got = None if outcome.result_text in (None, "") else json.loads(outcome.result_text)
            try:
                compare_exact(want, got)
            except MatchError as exc:
                raise AssertionError(f"{context}ExpectedResult mismatch {exc}") from None
    assert_history(data.get("ExpectedExecutionHistory") or [], outcome.history, matcher, label=context)
    problems = log_mismatches(data.get("ExpectedLogs") or [], outcome.logs, matcher.bindings)
    if problems:
        shown = "\n".join(f"  {json.dumps(line, default=str)}" for line in outcome.logs[-40:])
        raise AssertionError(context + "\n".join(problems) + f"\n\ncaptured log lines:\n{shown}")


def iter_requirements_or_none() -> Iterator[Optional[Requirement]]:
    """Requirements for parametrization, or a single None when the directory is missing."""
    root = conformance_dir()
    if not root.is_dir():
        yield None
        return
    yield from discover(root)
