"""DurableTestRunner: run a durable handler on a private in-memory engine and inspect it."""
from __future__ import annotations

import datetime as _dt
import json
import time
from typing import Any, Callable, Optional

from .. import wire
from ..config import Duration
from ..errors import DurableError, DurableOperationError
from .replay_check import ReplayResult, _lambda_handler, always_replay as _always_replay, replay
from .results import OperationNotFoundError, TestResult

__all__ = ["DurableTestRunner"]

_TERMINAL = wire.EXECUTION_TERMINAL
#: wait_for_callback / wait(timeout) advance virtual time at most this many times.
MAX_ADVANCES = 100_000


def _seconds(value: Any) -> float:
    if isinstance(value, Duration):
        return float(value.seconds)
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"expected a non-negative number of seconds, a timedelta or a Duration, got {value!r}")
    return float(value)


class DurableTestRunner:
    """Runs one durable handler on its own ``LocalEngine(db=":memory:")``.

    With ``skip_time=True`` (the default) time is virtual: waits and retry back-offs
    take no real time, and under ``freezegun.freeze_time`` the frozen clock moves with
    the engine's clock. ``always_replay=True`` cuts every invocation short after one new
    operation and re-invokes the handler, so every operation is replayed (see
    ``durable_sync.testing.replay_check.always_replay``).

    ``run(input)`` starts an execution and returns a :class:`TestResult` once it is
    terminal (or waits on the outside: a callback nobody answered). For tests that
    answer callbacks: ``start(input)``, ``wait_for_callback(name)``,
    ``send_callback_success(callback_id, value)``, then ``wait()``.
    """

    def __init__(self, handler: Callable, functions: Optional[dict] = None, skip_time: bool = True,
                 always_replay: bool = False, execution_timeout: Optional[int] = None):
        self.handler = _lambda_handler(handler)
        self.always_replay = always_replay
        self._invoked = _always_replay(self.handler) if always_replay else self.handler
        self.functions = dict(functions or {})
        self.skip_time = skip_time
        self.execution_timeout = execution_timeout
        self.arn: Optional[str] = None
        self._engine: Any = None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def engine(self) -> Any:
        """The runner's engine, created on first use (inside ``freeze_time`` if the test is)."""
        if self._closed:
            raise DurableError("this DurableTestRunner is closed")
        if self._engine is None:
            from ..local import LocalEngine
            self._engine = LocalEngine(db=":memory:", skip_time=self.skip_time, functions=self.functions)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._closed = True

    def __enter__(self) -> "DurableTestRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- running ---------------------------------------------------------------------------
    def start(self, input: Any = None, name: Optional[str] = None) -> str:
        """Start an execution (it runs until it first waits); returns its ARN."""
        self.arn = self.engine.start(self._invoked, input, name=name, execution_timeout=self.execution_timeout)
        return self.arn

    def run(self, input: Any = None, name: Optional[str] = None, timeout: Optional[float] = None) -> TestResult:
        """Start an execution and wait for it (see :meth:`wait` for ``timeout``)."""
        self.start(input, name)
        return self.wait(timeout)

    def wait(self, timeout: Optional[float] = None) -> TestResult:
        """Let the current execution run until it is terminal, then return its TestResult.

        Virtual time (``skip_time=True``): time jumps from one due item to the next; the
        result is ``RUNNING`` when only the outside can move the execution (a callback
        nobody answered) or, with ``timeout``, once ``timeout`` virtual seconds have
        passed. Real time: blocks for at most ``timeout`` real seconds.
        """
        arn = self._current()
        engine = self.engine
        if not self.skip_time:
            engine.wait(arn, timeout)
        elif timeout is None:
            engine.wait(arn)
        else:
            deadline = engine.clock.now_ms() + int(round(_seconds(timeout) * 1000))
            for _ in range(MAX_ADVANCES):
                if engine.get_execution(arn).status in _TERMINAL:
                    break
                due = self._next_due_ms()
                if due is None or due > deadline:
                    self._advance_to(deadline)
                    break
                self._advance_to(due)
        return self.result()

    def result(self) -> TestResult:
        """The current execution as it stands now (time does not move)."""
        arn = self._current()
        engine = self.engine
        execution = engine.get_execution(arn)
        return TestResult(arn=arn, status=execution.status, result=execution.result, error=execution.error,
                          history=engine.history(arn), operations=engine.operations(arn),
                          raw_result=getattr(execution, "raw_result", None))

    def advance(self, seconds: Any) -> None:
        """Virtual time: move the clock by ``seconds`` (number, timedelta or Duration), firing what falls due."""
        self._require_virtual("advance()")
        self.engine.advance(_seconds(seconds))

    def now(self) -> _dt.datetime:
        """The engine's clock (UTC)."""
        return wire.ms_to_datetime(self.engine.clock.now_ms())

    # -- callbacks -------------------------------------------------------------------------
    def wait_for_callback(self, name: Optional[str] = None, timeout: Optional[float] = None) -> str:
        """The id of the callback ``name`` (any callback if None) once it waits for an answer.

        Virtual time moves from one due item to the next until such a callback exists; it
        fails (OperationNotFoundError, with the operation tree) when the execution ends,
        when nothing more can happen without outside help, or after ``timeout`` seconds
        (virtual seconds with skip_time, real ones otherwise). Callbacks created by
        ``wait_for_callback(name=...)`` are found by that name too.
        """
        __tracebackhide__ = True  # pytest: the test's line and the message, not the toolkit's frames
        arn = self._current()
        engine = self.engine
        if not self.skip_time:
            deadline = time.monotonic() + (10.0 if timeout is None else _seconds(timeout))
            while True:
                found = self._find_callback(arn, name)
                if found is not None:
                    return found
                if engine.get_execution(arn).status in _TERMINAL or time.monotonic() > deadline:
                    raise self._callback_missing(name, "the execution finished" if engine.get_execution(
                        arn).status in _TERMINAL else f"{timeout if timeout is not None else 10.0} s passed")
                time.sleep(0.005)
        deadline = None if timeout is None else engine.clock.now_ms() + int(round(_seconds(timeout) * 1000))
        for _ in range(MAX_ADVANCES):
            found = self._find_callback(arn, name)
            if found is not None:
                return found
            status = engine.get_execution(arn).status
            if status in _TERMINAL:
                raise self._callback_missing(name, f"the execution ended ({status})")
            due = self._next_due_ms()
            if due is None:
                raise self._callback_missing(name, "the execution waits for outside input, and nothing else is due")
            if deadline is not None and due > deadline:
                self._advance_to(deadline)
                raise self._callback_missing(name, f"{timeout} virtual seconds passed")
            self._advance_to(due)
        raise self._callback_missing(name, f"time was advanced {MAX_ADVANCES} times")

    def send_callback_success(self, callback_id: str, result: Any = None, *, raw: Any = None) -> None:
        """Answer a callback with ``result`` (a JSON value, sent as JSON text); ``raw=`` sends str/bytes as is."""
        if raw is not None:
            payload = raw
        elif result is None:
            payload = None
        else:
            payload = json.dumps(result)
        self.engine.send_callback_success(callback_id, payload)

    def send_callback_failure(self, callback_id: str, error: Any = None) -> None:
        """Fail a callback: ``error`` is an exception, a message, or a wire ErrorObject dict."""
        if isinstance(error, BaseException):
            if isinstance(error, DurableOperationError):
                error = {"ErrorType": error.error_type, "ErrorMessage": error.error_message}
            else:
                error = {"ErrorType": type(error).__name__, "ErrorMessage": str(error)}
        elif isinstance(error, str):
            error = {"ErrorType": "Error", "ErrorMessage": error}
        self.engine.send_callback_failure(callback_id, error)

    def send_callback_heartbeat(self, callback_id: str) -> None:
        self.engine.send_callback_heartbeat(callback_id)

    # -- replay ----------------------------------------------------------------------------
    def replay(self, recorded: Any = None, handler: Optional[Callable] = None,
               allow_new_operations: Optional[bool] = None) -> ReplayResult:
        """Replay ``handler`` (default: this runner's) against a recorded execution.

        ``recorded``: a TestResult, operation records, history events, or an ARN of this
        runner (default: the current execution). Raises NonDeterminismError with a diff
        when the code asks for different operations than the record holds.
        """
        __tracebackhide__ = True
        if recorded is None:
            recorded = self._current()
        engine = self._engine if isinstance(recorded, str) else None
        return replay(recorded, handler or self.handler, allow_new_operations=allow_new_operations, engine=engine)

    # -- internals -------------------------------------------------------------------------
    def _current(self) -> str:
        if self.arn is None:
            raise DurableError("no execution yet: call run() or start() first")
        return self.arn

    def _require_virtual(self, what: str) -> None:
        if not self.skip_time:
            raise DurableError(f"{what} needs virtual time: DurableTestRunner(..., skip_time=True)")

    def _next_due_ms(self) -> Optional[int]:
        """When the engine's next item falls due (execution timeouts aside), or None."""
        return self.engine.next_due_ms()

    def _advance_to(self, due_ms: int) -> None:
        engine = self.engine
        engine.advance(max(0, due_ms - engine.clock.now_ms()) / 1000)

    def _find_callback(self, arn: str, name: Optional[str]) -> Optional[str]:
        ops = self.engine.operations(arn)
        by_id = {op["Id"]: op for op in ops}
        found = None
        for op in ops:
            if op.get("Type") != wire.CALLBACK or op.get("Status") != wire.STARTED:
                continue
            callback_id = (op.get("CallbackDetails") or {}).get("CallbackId")
            if not callback_id:
                continue
            if name is None or op.get("Name") == name or _ancestor_named(op, by_id, name):
                found = callback_id  # the latest such callback
        return found

    def _callback_missing(self, name: Optional[str], why: str) -> OperationNotFoundError:
        result = self.result()
        callbacks = [op for op in result.all_operations() if op.type == wire.CALLBACK]
        what = f"callback named {name!r}" if name is not None else "callback"
        lines = [f"no {what} waiting for an answer: {why}"]
        if callbacks:
            lines.append("callbacks: " + "; ".join(op.label() for op in callbacks))
        lines.append(result.describe())
        return OperationNotFoundError("\n".join(lines))

    def __repr__(self) -> str:
        name = getattr(self.handler, "__name__", "handler")
        return f"DurableTestRunner({name}, skip_time={self.skip_time}, arn={self.arn!r})"


def _ancestor_named(op: dict, by_id: dict, name: str) -> bool:
    parent = by_id.get(op.get("ParentId"))
    while parent is not None:
        if parent.get("Name") == name:
            return True
        parent = by_id.get(parent.get("ParentId"))
    return False

