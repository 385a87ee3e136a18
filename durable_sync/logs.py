"""Loggers handed to user code, and a JSON formatter for Lambda.

``ctx.logger`` and ``step_ctx.logger`` are stdlib ``LoggerAdapter``s whose records
carry ``execution_arn``, ``operation_id``, ``operation_name`` and ``attempt``.
They are silent while the execution replays (so a replayed body does not log
twice) unless built with ``with_replay()``.
"""
from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable, Mapping

USER_LOGGER = logging.getLogger("durable_sync.user")


class DurableLogger(logging.LoggerAdapter):
    """A logger adapter that adds execution fields and mutes itself during replay."""

    def __init__(self, logger: logging.Logger, extra: Mapping[str, Any],
                 replaying: Callable[[], bool] | None = None, log_replay: bool = False):
        super().__init__(logger, dict(extra))
        self._replaying = replaying
        self._log_replay = log_replay

    def with_replay(self) -> "DurableLogger":
        """The same logger, but also logging while the execution replays."""
        return DurableLogger(self.logger, self.extra, self._replaying, log_replay=True)

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - stdlib name
        if not self._log_replay and self._replaying is not None and self._replaying():
            return False
        return self.logger.isEnabledFor(level)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = kwargs.get("extra")
        kwargs["extra"] = {**self.extra, **extra} if extra else self.extra
        return msg, kwargs


_FIELDS = (("execution_arn", "executionArn"), ("operation_id", "operationId"),
           ("operation_name", "operationName"), ("attempt", "attempt"),
           ("trace_id", "trace_id"), ("span_id", "span_id"))  # set by durable_sync.otel (OpenTelemetry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO-8601 ``...Z``), level, message, logger,
    executionArn, operationId, operationName, attempt (and trace_id / span_id when durable_sync.otel
    traces the execution)."""

    converter = staticmethod(time.gmtime)  # formatTime in UTC, whatever the process's TZ

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "timestamp": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
        }
        for attr, key in _FIELDS:
            value = getattr(record, attr, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["errorType"] = record.exc_info[0].__name__ if record.exc_info[0] else None
            out["stackTrace"] = self.formatException(record.exc_info).splitlines()
        return json.dumps(out, default=str)


def configure_json_logging(level: int | str = logging.INFO, stream: Any = None, *, logger: str | None = None,
                           replace: bool = True) -> logging.Handler:
    """One call to log JSON lines: a ``StreamHandler`` with :class:`JsonFormatter` on the root logger.

    ``level`` is set on that logger; ``stream`` defaults to ``sys.stdout`` (what Lambda sends to
    CloudWatch); ``logger`` names another logger than the root (e.g. ``"durable_sync.user"``,
    where ``ctx.logger`` and ``step_ctx.logger`` write). With ``replace`` (the default) the
    handlers already on that logger are removed first — on Lambda, the runtime's own handler,
    so that a record is not written twice. Calling it again replaces the handler it added
    before. Returns the new handler::

        import durable_sync as ds
        from durable_sync.logs import configure_json_logging

        configure_json_logging()             # at module level, next to the handler

        @ds.durable_handler
        def handler(event, ctx):
            ctx.logger.info("order received")   # {"level": "INFO", "message": "order received",
                                                 #  "executionArn": "...", ...}
    """
    import sys

    target = logging.getLogger(logger)
    for old in list(target.handlers):
        if replace or getattr(old, "_durable_sync_json", False):
            target.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter())
    handler._durable_sync_json = True  # type: ignore[attr-defined]
    target.addHandler(handler)
    target.setLevel(level)
    return handler
