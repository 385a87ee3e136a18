"""The checkpoint client for AWS: boto3 ``lambda`` with tenacity retries.

``BotoCheckpointClient`` implements :class:`durable_sync.checkpoint.CheckpointClient`
over ``CheckpointDurableExecution`` and ``GetDurableExecutionState``.

Retries. Throttling (429, ``TooManyRequestsException``, ``ThrottlingException``, ...),
5xx answers and connection failures (refused, reset, dropped response, read
timeout) are retried with tenacity: at most ``max_attempts`` calls (default 5),
exponential back-off with full jitter (``initial_backoff`` doubling up to
``max_backoff``). Every attempt of one checkpoint carries the SAME ``ClientToken``
and the same ``CheckpointToken``, so a call the service applied but whose answer
was lost is answered from the service's idempotency record, never applied twice.

botocore's own retries are switched off on the client this module builds
(``total_max_attempts=1``) so tenacity is the only retry layer and the bound is
exact. A client you pass in is used as it is: its botocore retries then run inside
each tenacity attempt (build it with ``Config(retries={"total_max_attempts": 1})``
to avoid that).

Errors become :class:`CheckpointError`:
- an invalid or stale checkpoint token (the message contains "invalid checkpoint
  token", any case), or throttling / 5xx / connection failure still failing after
  the retries -> ``retryable=True``: the handler re-raises it and Lambda retries
  the invocation, which replays from the last persisted checkpoint;
- any other 4xx (and client-side validation failures) -> ``retryable=False`` with
  the service's message: the execution fails with it.

Timestamps: botocore returns operation timestamps as ``datetime`` objects; the SDK
never does arithmetic on the timestamps it receives (``wire.to_epoch_ms`` accepts
both forms where one is needed), so responses are passed through unchanged.

Endpoint and credentials come from the standard AWS configuration, so
``AWS_ENDPOINT_URL_LAMBDA=http://127.0.0.1:9014`` (or ``AWS_ENDPOINT_URL``) points
the SDK at ``durable-sync serve`` without code changes.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Optional

from . import wire
from .errors import CheckpointError

log = logging.getLogger("durable_sync.aws")

#: Error codes that mean "slow down": retried with back-off.
THROTTLING_CODES = frozenset({
    "TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException",
    "RequestThrottledException", "RequestThrottled", "RequestLimitExceeded", "SlowDown",
    "ProvisionedThroughputExceededException", "TransactionInProgressException", "EC2ThrottledException",
    "PriorRequestNotComplete", "BandwidthLimitExceeded",
})
#: The service's answer to a token that is stale or belongs to another invocation.
STALE_TOKEN_MARKER = "invalid checkpoint token"
#: Largest CheckpointDurableExecution request body sent: one update may carry a full
#: 6 MiB payload (the Flusher sends such an update alone); the rest is headroom for
#: the update's other fields. Larger requests fail here, loudly, before sending.
MAX_CHECKPOINT_REQUEST_BYTES = wire.MAX_PAYLOAD_BYTES + 512 * 1024
#: Page size for GetDurableExecutionState (the service maximum).
STATE_PAGE_SIZE = 1000


def _client_config() -> Any:
    from botocore.config import Config

    return Config(
        retries={"total_max_attempts": 1, "mode": "standard"},  # tenacity is the retry layer
        connect_timeout=5,
        read_timeout=60,
        tcp_keepalive=True,
        max_pool_connections=32,
        user_agent_extra="durable_sync",
    )


def make_boto_client(**kwargs: Any) -> Any:
    """A boto3 ``lambda`` client with botocore retries off; ``kwargs`` go to ``Session.client``."""
    import boto3

    kwargs.setdefault("config", _client_config())
    # A Session per client: boto3's default session is not safe to share across threads.
    return boto3.session.Session().client("lambda", **kwargs)


def _prune(value: Any) -> Any:
    """Drop ``None`` members (botocore refuses them) from dicts, recursively."""
    if isinstance(value, dict):
        return {k: _prune(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune(v) for v in value]
    return value


def _error_parts(exc: BaseException) -> tuple[Optional[str], str, Optional[int]]:
    """(code, message, HTTP status) of a botocore ClientError; (None, str(exc), None) otherwise."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        err = response.get("Error") or {}
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        return err.get("Code"), err.get("Message") or str(exc), status
    return None, str(exc), None


def is_transient(exc: BaseException) -> bool:
    """Throttling, 5xx or a connection failure: worth another attempt with the same ClientToken."""
    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import HTTPClientError

    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return True  # refused, reset, dropped response, timeouts
    code, _, status = _error_parts(exc)
    if code is None and status is None:
        return False
    return code in THROTTLING_CODES or status == 429 or (status is not None and status >= 500)


def is_stale_token(exc: BaseException) -> bool:
    """The service refused the checkpoint token (stale, or from another invocation)."""
    code, message, _ = _error_parts(exc)
    return code is not None and STALE_TOKEN_MARKER in (message or "").lower()


class BotoCheckpointClient:
    """CheckpointClient over boto3 (see the module docstring for retries and error classes)."""

    def __init__(self, boto_client: Any = None, *, max_attempts: int = 5, initial_backoff: float = 0.1,
                 max_backoff: float = 5.0, sleep: Optional[Callable[[float], None]] = None):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.boto_client = boto_client if boto_client is not None else make_boto_client()
        self.max_attempts = max_attempts
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self._sleep = sleep

    # -- CheckpointClient ----------------------------------------------------------
    def checkpoint(self, arn: str, token: str, updates: list[dict[str, Any]], client_token: str) -> dict[str, Any]:
        """CheckpointDurableExecution; returns {CheckpointToken?, NewExecutionState}."""
        request = {"DurableExecutionArn": arn, "CheckpointToken": token, "Updates": _prune(list(updates)),
                   "ClientToken": client_token}
        self._validate_checkpoint(request)
        response = self._call("CheckpointDurableExecution", self.boto_client.checkpoint_durable_execution, request)
        out: dict[str, Any] = {"NewExecutionState": response.get("NewExecutionState") or {}}
        if response.get("CheckpointToken"):
            out["CheckpointToken"] = response["CheckpointToken"]
        return out

    def get_state(self, arn: str, token: str, marker: str) -> dict[str, Any]:
        """GetDurableExecutionState (one page of 1000); returns {Operations, NextMarker?}."""
        request = {"DurableExecutionArn": arn, "CheckpointToken": token, "Marker": marker,
                   "MaxItems": STATE_PAGE_SIZE}
        response = self._call("GetDurableExecutionState", self.boto_client.get_durable_execution_state, request)
        out: dict[str, Any] = {"Operations": response.get("Operations") or []}
        if response.get("NextMarker"):
            out["NextMarker"] = response["NextMarker"]
        return out

    # -- internals -------------------------------------------------------------------
    @staticmethod
    def _validate_checkpoint(request: dict[str, Any]) -> None:
        updates = request["Updates"]
        if len(updates) > wire.MAX_BATCH_UPDATES:
            raise CheckpointError(
                f"a checkpoint carries at most {wire.MAX_BATCH_UPDATES} updates, this one has {len(updates)}",
                retryable=False, error_type="ValidationError")
        token = request["ClientToken"]
        if not isinstance(token, str) or not 1 <= len(token) <= 64 or not all("!" <= c <= "~" for c in token):
            raise CheckpointError(f"ClientToken {token!r} must be 1-64 printable ASCII characters without spaces",
                                  retryable=False, error_type="ValidationError")
        for update in updates:
            try:
                wire.validate_update(update)
            except Exception as exc:  # noqa: BLE001 - reported as a checkpoint validation failure
                raise CheckpointError(f"invalid checkpoint update: {exc}", retryable=False,
                                      error_type="ValidationError") from None
        size = len(json.dumps(request, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        if size > MAX_CHECKPOINT_REQUEST_BYTES:
            raise CheckpointError(
                f"the checkpoint request is {size} bytes, more than the {MAX_CHECKPOINT_REQUEST_BYTES} bytes the "
                f"service accepts ({len(updates)} updates); return smaller values from steps (store large data "
                "elsewhere and return a reference)", retryable=False, error_type="RequestEntityTooLargeException")

    def _call(self, operation: str, method: Callable[..., dict], request: dict[str, Any]) -> dict[str, Any]:
        import tenacity

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            code, message, status = _error_parts(exc) if exc else (None, "", None)
            log.warning("%s attempt %d/%d failed (%s); retrying in %.2f s with the same ClientToken",
                        operation, state.attempt_number, self.max_attempts,
                        f"{code or type(exc).__name__}: {message}", state.next_action.sleep if state.next_action
                        else 0.0)

        kwargs: dict[str, Any] = {}
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.max_attempts),
            wait=tenacity.wait_random_exponential(multiplier=self.initial_backoff, max=self.max_backoff),
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=before_sleep,
            reraise=True,
            **kwargs,
        )
        attempts = 0
        try:
            for attempt in retrying:
                with attempt:
                    attempts += 1
                    return method(**request)
        except CheckpointError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below
            raise self._classify(operation, exc, attempts) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _classify(operation: str, exc: BaseException, attempts: int) -> CheckpointError:
        code, message, _ = _error_parts(exc)
        label = code or type(exc).__name__
        if is_stale_token(exc):
            return CheckpointError(
                f"{operation}: {label}: {message} (the invocation will be retried and replayed)",
                retryable=True, error_type=code)
        if is_transient(exc):
            return CheckpointError(
                f"{operation} failed {attempts} time(s), last with {label}: {message}; giving up so that Lambda "
                "retries the invocation", retryable=True, error_type=label)
        return CheckpointError(f"{operation}: {label}: {message}", retryable=False, error_type=label)


_default: Optional[BotoCheckpointClient] = None
_default_lock = threading.Lock()


def default_client() -> BotoCheckpointClient:
    """The process-wide client, created once and reused across warm invocations (thread-safe)."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = BotoCheckpointClient()
            client = _default
    return client


def reset_default_client() -> None:
    """Forget the cached client (tests; or after changing the AWS configuration)."""
    global _default
    with _default_lock:
        _default = None
