"""What one invocation knows: the operations of the execution by id, and the runtime its contexts share.

Lookups are O(1) (a dict by id), so replaying n operations costs O(n). Merges
from checkpoint responses and reads from branch threads share one lock.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Iterable, Optional

from . import wire
from .errors import SuspendExecution


class ExecutionState:
    """Operations of one execution as seen by the SDK during an invocation."""

    def __init__(self, arn: str, operations: Iterable[dict[str, Any]]):
        self.arn = arn
        self._lock = threading.Lock()
        self._ops: dict[str, dict[str, Any]] = {}
        self.execution_op: dict[str, Any] | None = None
        for op in operations:
            self._ops[op["Id"]] = op
            if op.get("Type") == wire.EXECUTION:
                self.execution_op = op

    def get(self, op_id: str) -> dict[str, Any] | None:
        return self._ops.get(op_id)

    def merge(self, operations: Iterable[dict[str, Any]]) -> None:
        """Take newer operation records from a checkpoint response."""
        with self._lock:
            for op in operations:
                self._ops[op["Id"]] = op

    def __len__(self) -> int:
        return len(self._ops)

    def operations(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._ops.values())


class Runtime:
    """What all contexts of one invocation share.

    ``state`` (the operations by id), ``flusher`` (the checkpoint path), the handler's
    ``serdes`` and ``checkpoint_mode``, a thread-local ``local`` the operation scopes keep their per-thread
    markers in, the testing ``operation_hook`` and ``context_factory``: the class that wraps
    an ``OperationScope`` into the ``DurableContext`` user code receives (given by the
    handler, so the operation layer never imports the façade above it).
    """

    def __init__(self, arn: str, state: ExecutionState, flusher: Any, serdes: Any = None,
                 context_factory: Optional[Callable[[Any], Any]] = None, checkpoint_mode: Any = None):
        self.arn = arn
        self.state = state
        self.flusher = flusher
        self.serdes = serdes
        self.checkpoint_mode = checkpoint_mode  # the handler's CheckpointMode (None: AWAITED)
        self.context_factory = context_factory
        self.local = threading.local()
        self._lock = threading.Lock()
        self._suspended = False  # a SuspendExecution was raised in this invocation
        # Testing hook (durable_sync.testing): ``hook(request, record) -> bool`` sees every operation the code
        # asks for (request: Id, ParentId, Position, Type, SubType, Name); True ends the invocation there.
        self.operation_hook: Optional[Callable[[dict, Optional[dict]], bool]] = None
        #: The invocation's instrumentation plugins (durable_sync.instrumentation.dispatch), None without plugins.
        self.instrumentation: Any = None

    def suspend(self, reason: str) -> SuspendExecution:
        """The exception that ends the invocation PENDING; remembers that one was raised."""
        with self._lock:
            self._suspended = True
        return SuspendExecution(reason)

    @property
    def suspended(self) -> bool:
        """A SuspendExecution was raised (and not absorbed by a map/parallel/concurrently outcome)."""
        with self._lock:
            return self._suspended

    def restore_suspended(self, previous: bool) -> None:
        """A map/parallel/concurrently decided without its suspended units: their suspensions are absorbed."""
        with self._lock:
            self._suspended = previous
