"""OpenTelemetry traces for durable executions: ``plugins=[OtelPlugin()]``.

Needs the extra ``lambda-durable-sync[otel]`` (opentelemetry-api and opentelemetry-sdk).

One trace per execution, whose id is derived from the execution ARN, so every invocation of
the execution agrees on it without storing anything. Spans (all ids derived from the ARN and
operation ids, so spans written by different invocations join one tree):

- the **execution** span (root): from the execution's start to the end of the invocation that
  finishes it; written once, by that invocation;
- an **invocation** span per invocation (child of the execution span), current on the handler's
  thread while it runs; the invocation's incoming trace context (an active span, Lambda's
  ``_X_AMZN_TRACE_ID``, a W3C ``TRACEPARENT``) becomes a link of it, never a second trace;
- an **operation** span per operation (step, wait, child context, map and its items, parallel
  and its branches, callback, invoke, wait_for_condition), child of its parent operation's span
  (or of the execution span), from the service's start to end timestamps; written once, by the
  invocation that sees the operation end (``on_operation_end`` fires once per operation), so an
  operation that starts in one invocation and ends in another is one span and a replayed
  operation is never written twice;
- an **attempt** span per run of a step body or a wait_for_condition check (child of its
  operation's span), current while the body runs; a failed attempt records the error as an
  ``exception`` event.

While user code of an operation runs, its span is the current span, so ``ctx.logger`` /
``step_ctx.logger`` records carry ``trace_id`` and ``span_id`` (``ds.JsonFormatter`` writes them)
and spans the user creates nest under it.

The deterministic ids use the OpenTelemetry SDK's id-generator hook of the tracer; with a tracer
provider that is not the SDK's, ids are random and spans of different invocations do not join.
"""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from . import wire
from .instrumentation.api import (InstrumentationPlugin, InvocationEndInfo, InvocationStartInfo, OperationEndInfo,
                                  UserFunctionEndInfo, UserFunctionStartInfo, now)
from .logs import USER_LOGGER

TRACER_NAME = "durable_sync"

# --------------------------------------------------------------------------- ids


def _hash(*parts: str, bits: int) -> int:
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=bits // 8).digest()
    return int.from_bytes(digest, "big") or 1  # 0 is the invalid id


def trace_id_of(execution_arn: str) -> int:
    """The execution's trace id (128 bits), from its ARN."""
    return _hash("trace", execution_arn, bits=128)


def execution_span_id(execution_arn: str) -> int:
    return _hash("execution", execution_arn, bits=64)


def operation_span_id(execution_arn: str, operation_id: str) -> int:
    """The span id of an operation (64 bits), from the ARN and the operation id."""
    return _hash("operation", execution_arn, operation_id, bits=64)


def attempt_span_id(execution_arn: str, operation_id: str, attempt: int) -> int:
    """The span id of one attempt of a step (or one check of a wait_for_condition)."""
    return _hash("attempt", execution_arn, operation_id, str(attempt), bits=64)


def invocation_span_id(execution_arn: str, operations: dict[str, Any]) -> int:
    """The span id of an invocation, from the ARN and the state it starts with: an invocation run
    again on the same checkpoints gets the same id."""
    state = ",".join(sorted(f"{op_id}={info.status}:{info.attempt}" for op_id, info in operations.items()))
    return _hash("invocation", execution_arn, state, bits=64)


_next_ids: contextvars.ContextVar[Optional[tuple[Optional[int], int]]] = contextvars.ContextVar(
    "durable_sync_next_span_ids", default=None)
_install_lock = threading.Lock()


class DeterministicIds(IdGenerator):
    """Ids for the next span this thread starts, when the plugin set them; else the wrapped generator's."""

    def __init__(self, fallback: Optional[IdGenerator] = None):
        self.fallback = fallback or RandomIdGenerator()

    def generate_trace_id(self) -> int:
        fixed = _next_ids.get()
        if fixed is not None and fixed[0] is not None:
            return fixed[0]
        return self.fallback.generate_trace_id()

    def generate_span_id(self) -> int:
        fixed = _next_ids.get()
        if fixed is not None:
            _next_ids.set(None)
            return fixed[1]
        return self.fallback.generate_span_id()

    def is_trace_id_random(self) -> bool:
        return _next_ids.get() is None and bool(getattr(self.fallback, "is_trace_id_random", lambda: False)())


def _install(tracer: Any) -> bool:
    """Put :class:`DeterministicIds` on an SDK tracer (once); False for a tracer without the hook."""
    if not hasattr(tracer, "id_generator"):
        return False
    with _install_lock:
        if not isinstance(tracer.id_generator, DeterministicIds):
            tracer.id_generator = DeterministicIds(tracer.id_generator)
    return True


# --------------------------------------------------------------------------- incoming context


def _xray_context(header: Optional[str]) -> Optional[SpanContext]:
    """``Root=1-<8 hex>-<24 hex>;Parent=<16 hex>;Sampled=1`` as a remote span context."""
    if not header:
        return None
    parts = dict(p.strip().partition("=")[::2] for p in header.split(";"))
    root, parent = parts.get("Root", "").split("-"), parts.get("Parent", "")
    try:
        trace_id = int("".join(root[1:3]), 16) if len(root) == 3 and root[0] == "1" else 0
        span_id = int(parent, 16) if len(parent) == 16 else 0
    except ValueError:
        return None
    flags = TraceFlags(TraceFlags.SAMPLED if parts.get("Sampled") == "1" else TraceFlags.DEFAULT)
    ctx = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return ctx if ctx.is_valid else None


def _w3c_context(header: Optional[str]) -> Optional[SpanContext]:
    """A W3C ``traceparent`` (``00-<32 hex>-<16 hex>-<2 hex>``) as a remote span context."""
    if not header:
        return None
    parts = header.strip().split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        ctx = SpanContext(int(parts[1], 16), int(parts[2], 16), is_remote=True,
                          trace_flags=TraceFlags(int(parts[3], 16) & 1))
    except ValueError:
        return None
    return ctx if ctx.is_valid else None


def incoming_links(trace_id: int = 0) -> list[Link]:
    """The invocation's incoming trace contexts: the span current on the handler thread (e.g. the
    Lambda instrumentation's; not one of the execution's own trace ``trace_id``), ``_X_AMZN_TRACE_ID``
    and ``TRACEPARENT``, each once."""
    found: list[tuple[SpanContext, str]] = []
    current = trace.get_current_span().get_span_context()
    if current.is_valid and current.trace_id != trace_id:
        found.append((current, "active-span"))
    for ctx, source in ((_xray_context(os.environ.get("_X_AMZN_TRACE_ID")), "_X_AMZN_TRACE_ID"),
                        (_w3c_context(os.environ.get("TRACEPARENT")), "TRACEPARENT")):
        if ctx is not None:
            found.append((ctx, source))
    links, seen = [], set()
    for ctx, source in found:
        if (ctx.trace_id, ctx.span_id) not in seen:
            seen.add((ctx.trace_id, ctx.span_id))
            links.append(Link(ctx, {"durable.link.source": source}))
    return links


# --------------------------------------------------------------------------- logs


class TraceIdsFilter(logging.Filter):
    """Puts the current span's ``trace_id`` / ``span_id`` (hex) on every record of durable_sync's user logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        return True


_LOG_FILTER = TraceIdsFilter()


def install_log_ids(logger: logging.Logger = USER_LOGGER) -> None:
    """Add :class:`TraceIdsFilter` to ``logger`` (durable_sync's user logger by default); idempotent."""
    if _LOG_FILTER not in logger.filters:
        logger.addFilter(_LOG_FILTER)


# --------------------------------------------------------------------------- the plugin

_TERMINAL_STATUS = {"SUCCEEDED", "FAILED"}


@dataclass
class _Invocation:
    """What the plugin keeps for one running invocation."""

    tracer: Any
    trace_id: int
    flags: TraceFlags
    span: Any = None
    token: Any = None
    running: dict[tuple[str, Optional[int]], tuple[Any, Any]] = field(default_factory=dict)  # user code: span, token

    def parent(self, span_id: int) -> Any:
        """An OTel context whose current span is ``span_id`` of this trace (written or not yet)."""
        ctx = SpanContext(self.trace_id, span_id, is_remote=False, trace_flags=self.flags)
        return trace.set_span_in_context(NonRecordingSpan(ctx))


def _ns(when: Any) -> Optional[int]:
    return int(when.timestamp() * 1_000_000_000) if when is not None else None


def _operation_attributes(info: Any) -> dict[str, Any]:
    attrs = {"durable.execution.arn": info.execution_arn, "durable.operation.id": info.operation_id,
             "durable.operation.type": info.operation_type, "durable.operation.subtype": info.sub_type,
             "durable.operation.name": info.name, "durable.operation.parent_id": info.parent_id,
             "durable.operation.status": info.status, "durable.operation.attempt": info.attempt}
    return {k: v for k, v in attrs.items() if v is not None}


def _record_error(span: Any, error: Optional[dict], when: Optional[int] = None) -> None:
    if not error:
        return
    attrs = {"exception.type": str(error.get("ErrorType") or "Error"),
             "exception.message": str(error.get("ErrorMessage") or "")}
    if error.get("StackTrace"):
        attrs["exception.stacktrace"] = "\n".join(map(str, error["StackTrace"]))
    span.add_event("exception", attrs, timestamp=when)
    span.set_status(Status(StatusCode.ERROR, attrs["exception.message"] or attrs["exception.type"]))


class OtelPlugin(InstrumentationPlugin):
    """Writes the spans of durable executions (see the module doc). ``tracer_provider``: the provider
    to use (default: OpenTelemetry's global provider, looked up at each invocation's start). With
    ``flush`` (the default) the provider's ``force_flush()`` runs at the end of every invocation, so
    spans batched by a ``BatchSpanProcessor`` leave before Lambda freezes the process.

    One instance serves any number of invocations, also at the same time (the local engine runs
    many executions in one process).
    """

    def __init__(self, tracer_provider: Any = None, flush: bool = True):
        self.tracer_provider = tracer_provider
        self.flush = flush
        self._lock = threading.Lock()
        self._invocations: dict[str, _Invocation] = {}
        install_log_ids()

    def _tracer(self) -> Any:
        from . import __version__

        provider = self.tracer_provider or trace.get_tracer_provider()
        return provider.get_tracer(TRACER_NAME, __version__)

    def _state(self, arn: Optional[str]) -> Optional[_Invocation]:
        with self._lock:
            return self._invocations.get(arn)

    def _start_span(self, state: _Invocation, name: str, span_id: int, parent: Any, **kw: Any) -> Any:
        token = _next_ids.set((state.trace_id, span_id))
        try:
            return state.tracer.start_span(name, context=parent, **kw)
        finally:
            _next_ids.reset(token)

    # -- invocation ---------------------------------------------------------------------------
    def on_invocation_start(self, info: InvocationStartInfo) -> None:
        tracer = self._tracer()
        _install(tracer)
        trace_id = trace_id_of(info.execution_arn)
        sampler = getattr(tracer, "sampler", None)
        sampled = sampler is None or sampler.should_sample(None, trace_id, "durable execution").decision.is_sampled()
        state = _Invocation(tracer, trace_id, TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT))
        links = incoming_links(trace_id)
        with self._lock:
            self._invocations[info.execution_arn] = state
        state.span = self._start_span(
            state, "invocation", invocation_span_id(info.execution_arn, info.operations),
            state.parent(execution_span_id(info.execution_arn)), kind=SpanKind.SERVER, links=links,
            attributes={"durable.execution.arn": info.execution_arn,
                        "durable.invocation.first": info.is_first_invocation,
                        **({"faas.invocation_id": info.request_id} if info.request_id else {})})
        state.token = otel_context.attach(trace.set_span_in_context(state.span))

    def on_invocation_end(self, info: InvocationEndInfo) -> None:
        with self._lock:
            state = self._invocations.pop(info.execution_arn, None)
        if state is None:
            return
        state.span.set_attribute("durable.invocation.status", info.status)
        _record_error(state.span, info.error)
        state.span.end()
        otel_context.detach(state.token)
        if info.status in _TERMINAL_STATUS:  # this invocation finished the execution
            span = self._start_span(
                state, "durable execution", execution_span_id(info.execution_arn), otel_context.Context(),
                start_time=_ns(info.execution_start_time),
                attributes={"durable.execution.arn": info.execution_arn, "durable.execution.status": info.status})
            _record_error(span, info.error)
            # Ends now, or at its last operation's end if that is later (the local engine's virtual clock
            # runs ahead of the wall clock).
            ends = [op.end_time for op in info.operations.values() if op.end_time is not None]
            span.end(end_time=max([_ns(now())] + [_ns(t) for t in ends]))
        if self.flush:  # Lambda may freeze the process as soon as the handler returns
            flush = getattr(self.tracer_provider or trace.get_tracer_provider(), "force_flush", None)
            if flush is not None:
                flush()

    # -- operations -----------------------------------------------------------------------------
    def _parent_span_id(self, arn: str, parent_id: Optional[str]) -> int:
        return operation_span_id(arn, parent_id) if parent_id else execution_span_id(arn)

    def on_operation_end(self, info: OperationEndInfo) -> None:
        state = self._state(info.execution_arn)
        if state is None:
            return
        arn = info.execution_arn
        name = " ".join(p for p in (info.sub_type or info.operation_type, info.name) if p)
        span = self._start_span(state, name, operation_span_id(arn, info.operation_id),
                                state.parent(self._parent_span_id(arn, info.parent_id)),
                                start_time=_ns(info.start_time), attributes=_operation_attributes(info))
        end = _ns(info.end_time or now())
        if info.status != wire.SUCCEEDED:
            _record_error(span, info.error or {"ErrorType": info.status, "ErrorMessage": ""}, end)
        span.end(end_time=end)

    # -- user code ----------------------------------------------------------------------------------
    def on_user_function_start(self, info: UserFunctionStartInfo) -> None:
        state = self._state(info.execution_arn)
        if state is None:
            return
        arn = info.execution_arn
        if info.operation_type == wire.CONTEXT:  # the body of a context: its operation's span is current
            span = NonRecordingSpan(SpanContext(state.trace_id, operation_span_id(arn, info.operation_id),
                                                is_remote=False, trace_flags=state.flags))
        else:
            attempt = info.attempt or 1
            span = self._start_span(
                state, f"{info.name or info.sub_type or info.operation_type} attempt {attempt}",
                attempt_span_id(arn, info.operation_id, attempt), state.parent(operation_span_id(arn, info.operation_id)),
                start_time=_ns(info.start_time),  # the operation's span has the other attributes
                attributes={"durable.operation.id": info.operation_id, "durable.operation.attempt": attempt})
        token = otel_context.attach(trace.set_span_in_context(span))
        with self._lock:
            state.running[(info.operation_id, info.attempt)] = (span, token)

    def on_user_function_end(self, info: UserFunctionEndInfo) -> None:
        state = self._state(info.execution_arn)
        if state is None:
            return
        with self._lock:
            span, token = state.running.pop((info.operation_id, info.attempt), (None, None))
        if span is None:
            return
        otel_context.detach(token)
        if span.is_recording():
            span.set_attribute("durable.attempt.outcome", info.outcome)
            _record_error(span, info.error, _ns(info.end_time))
            span.end(end_time=_ns(info.end_time))


# --------------------------------------------------------------------------- OTLP-JSON lines


def _any_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, (list, tuple)):
        return {"arrayValue": {"values": [_any_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _attributes(attrs: Any) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in (attrs or {}).items()]


def otlp_span(span: Any) -> dict[str, Any]:
    """One finished SDK span in the OTLP/JSON encoding (ids as hex, times as decimal strings)."""
    out: dict[str, Any] = {
        "traceId": format(span.context.trace_id, "032x"),
        "spanId": format(span.context.span_id, "016x"),
        "name": span.name,
        "kind": span.kind.value + 1,  # OTLP counts SPAN_KIND_UNSPECIFIED as 0
        "startTimeUnixNano": str(span.start_time),
        "endTimeUnixNano": str(span.end_time),
        "attributes": _attributes(span.attributes),
        "status": {"code": span.status.status_code.value,
                   **({"message": span.status.description} if span.status.description else {})},
    }
    if span.parent is not None:
        out["parentSpanId"] = format(span.parent.span_id, "016x")
    if span.events:
        out["events"] = [{"timeUnixNano": str(e.timestamp), "name": e.name, "attributes": _attributes(e.attributes)}
                         for e in span.events]
    if span.links:
        out["links"] = [{"traceId": format(link.context.trace_id, "032x"), "spanId": format(link.context.span_id, "016x"),
                         "attributes": _attributes(link.attributes)} for link in span.links]
    return out


def otlp_request(spans: Any) -> dict[str, Any]:
    """An OTLP ``ExportTraceServiceRequest`` (JSON) holding ``spans``, grouped by resource and scope."""
    resources: dict[int, tuple[Any, dict[tuple, list]]] = {}
    for span in spans:
        _, scopes = resources.setdefault(id(span.resource), (span.resource, {}))
        scope = span.instrumentation_scope
        key = (scope.name, scope.version) if scope is not None else ("", None)
        scopes.setdefault(key, []).append(otlp_span(span))
    return {"resourceSpans": [
        {"resource": {"attributes": _attributes(resource.attributes if resource is not None else {})},
         "scopeSpans": [{"scope": {"name": name, **({"version": version} if version else {})}, "spans": items}
                        for (name, version), items in scopes.items()]}
        for resource, scopes in resources.values()]}


class OtlpJsonLinesExporter(SpanExporter):
    """A span exporter writing one OTLP/JSON ``ExportTraceServiceRequest`` per line to ``path`` (appending),
    the format of the OpenTelemetry Collector's file exporter and ``otlpjsonfile`` receiver."""

    def __init__(self, path: Any):
        self.path = os.fspath(path)
        self._lock = threading.Lock()

    def export(self, spans: Any) -> SpanExportResult:
        if not spans:
            return SpanExportResult.SUCCESS
        line = json.dumps(otlp_request(spans), separators=(",", ":")) + "\n"
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


@contextlib.contextmanager
def trace_to_file(path: Any, service_name: str = "durable_sync") -> Iterator[Any]:
    """While the block runs, every durable handler of this process is traced (an :class:`OtelPlugin` on a
    tracer provider of its own) and its spans go to ``path`` as OTLP-JSON lines (the file is started
    afresh). Yields the tracer provider. ``durable-sync run --trace FILE`` is this around the run."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from .instrumentation.registry import add_process_plugin

    open(os.fspath(path), "w", encoding="utf-8").close()
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonLinesExporter(path)))
    remove = add_process_plugin(OtelPlugin(provider))
    try:
        yield provider
    finally:
        remove()
        provider.shutdown()
