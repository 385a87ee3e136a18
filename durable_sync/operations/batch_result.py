"""The outcome of ``ctx.map`` / ``ctx.parallel``: ``BatchResult``, its items, and the completion rules.

Completion (``CompletionConfig``, as the service's conformance suite expects):
failures exceed the tolerance when ``failures > tolerated_failure_count`` or
``failures * 100 / total > tolerated_failure_percentage`` (total = all branches);
otherwise the batch is done when every branch completed, or when
``successes >= min_successful``.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, Optional

from ..config import CompletionConfig
from ..errors import ChildContextError, SerDesError

__all__ = ["BatchResult", "BatchItem", "BatchItemStatus", "CompletionReason", "Completion"]


class BatchItemStatus(str, enum.Enum):
    """Status of one branch in a BatchResult (STARTED: began but did not finish)."""

    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STARTED = "STARTED"

    def __str__(self) -> str:
        return self.value


class CompletionReason(str, enum.Enum):
    """Why a map/parallel stopped."""

    ALL_COMPLETED = "ALL_COMPLETED"
    MIN_SUCCESSFUL_REACHED = "MIN_SUCCESSFUL_REACHED"
    FAILURE_TOLERANCE_EXCEEDED = "FAILURE_TOLERANCE_EXCEEDED"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, eq=False)
class BatchItem:
    """One branch of a map/parallel: its index, status, result or error (a ChildContextError)."""

    index: int
    status: BatchItemStatus
    result: Any = None
    error: Optional[ChildContextError] = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "status": self.status.value, "result": self.result,
                "error": self.error.to_error_object() if self.error is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchItem":
        try:
            index, status = data["index"], BatchItemStatus(data["status"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SerDesError(f"not a BatchItem dict ({exc!r}): {data!r:.200}") from None
        err = data.get("error")
        return cls(index, status, data.get("result"),
                   ChildContextError.from_error_object(err) if err else None)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, BatchItem) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


class BatchResult:
    """The outcome of ``ctx.map`` / ``ctx.parallel``.

    ``all`` holds every branch that started, in index order (branches never
    started because the outcome was decided earlier are absent, so ``total_count``
    counts started branches). A branch that began but had not finished when the
    outcome was decided has status STARTED.
    """

    __slots__ = ("all", "completion_reason")

    def __init__(self, all: Iterable[BatchItem], completion_reason: Any):  # noqa: A002 - public name
        self.all: list[BatchItem] = sorted(all, key=lambda item: item.index)
        self.completion_reason = CompletionReason(completion_reason)

    # -- accessors -----------------------------------------------------------------
    def get_results(self) -> list[Any]:
        """Results of the succeeded branches in index order (a None result stays in the list)."""
        return [item.result for item in self.all if item.status is BatchItemStatus.SUCCEEDED]

    def succeeded(self) -> list[BatchItem]:
        return [item for item in self.all if item.status is BatchItemStatus.SUCCEEDED]

    def failed(self) -> list[BatchItem]:
        return [item for item in self.all if item.status is BatchItemStatus.FAILED]

    def started(self) -> list[BatchItem]:
        """Branches that began but had not finished when the outcome was decided."""
        return [item for item in self.all if item.status is BatchItemStatus.STARTED]

    def get_errors(self) -> list[ChildContextError]:
        return [item.error for item in self.all if item.status is BatchItemStatus.FAILED and item.error is not None]

    def throw_if_error(self) -> None:
        """Raise the first failed branch's error (a ChildContextError) if any branch failed."""
        for item in self.all:
            if item.status is BatchItemStatus.FAILED:
                err = item.error.to_error_object() if item.error is not None else {
                    "ErrorType": "ChildContextError", "ErrorMessage": f"branch {item.index} failed"}
                raise ChildContextError.from_error_object(err)

    @property
    def has_failure(self) -> bool:
        return any(item.status is BatchItemStatus.FAILED for item in self.all)

    @property
    def status(self) -> BatchItemStatus:
        """FAILED when any branch failed, else SUCCEEDED."""
        return BatchItemStatus.FAILED if self.has_failure else BatchItemStatus.SUCCEEDED

    @property
    def success_count(self) -> int:
        return sum(1 for item in self.all if item.status is BatchItemStatus.SUCCEEDED)

    @property
    def failure_count(self) -> int:
        return sum(1 for item in self.all if item.status is BatchItemStatus.FAILED)

    @property
    def started_count(self) -> int:
        return sum(1 for item in self.all if item.status is BatchItemStatus.STARTED)

    @property
    def total_count(self) -> int:
        return len(self.all)

    # -- (de)serialization -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"all": [item.to_dict() for item in self.all], "completionReason": self.completion_reason.value}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BatchResult":
        if not isinstance(data, dict) or not isinstance(data.get("all"), list):
            raise SerDesError(f"not a BatchResult dict (needs 'all' and 'completionReason'): {data!r:.200}")
        items = [BatchItem.from_dict(item) for item in data["all"]]
        try:
            reason = CompletionReason(data.get("completionReason"))
        except ValueError:
            raise SerDesError(f"BatchResult dict has an unknown completionReason {data.get('completionReason')!r}") \
                from None
        return cls(items, reason)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, BatchResult) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (f"BatchResult({self.completion_reason.value}, succeeded={self.success_count}, "
                f"failed={self.failure_count}, started={self.started_count}, total={self.total_count})")


class Completion:
    """The service's completion rules over counts (see the module docstring)."""

    __slots__ = ("total", "min_successful", "tolerated_count", "tolerated_pct")

    def __init__(self, cfg: Optional[CompletionConfig], total: int):
        cfg = cfg or CompletionConfig()
        self.total = total
        self.min_successful = cfg.min_successful
        self.tolerated_count = cfg.tolerated_failure_count
        self.tolerated_pct = cfg.tolerated_failure_percentage

    def decide(self, successes: int, failures: int) -> Optional[CompletionReason]:
        if self.tolerated_count is not None and failures > self.tolerated_count:
            return CompletionReason.FAILURE_TOLERANCE_EXCEEDED
        if self.tolerated_pct is not None and self.total and failures * 100 > self.tolerated_pct * self.total:
            return CompletionReason.FAILURE_TOLERANCE_EXCEEDED
        if successes + failures >= self.total:
            return CompletionReason.ALL_COMPLETED
        if self.min_successful is not None and successes >= self.min_successful:
            return CompletionReason.MIN_SUCCESSFUL_REACHED
        return None
