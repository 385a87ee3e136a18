"""Persistence of the local engine: the ``Store`` interface, the in-memory store, and ``open_store``.

The SQLite store (``sqlite.SqliteStore``) keeps executions crash-safe in one file; ``schema`` holds
its schema, migrations and owner lock, ``reader`` the read-only access other processes use, and
``inbox`` the requests other processes post to the engine that owns the database.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ...errors import ValidationError
from ..service import Execution
from .inbox import CALLBACK_KINDS, CONTROL_KINDS, INBOX_KINDS, deliver, deliver_callback
from .reader import Reader
from .schema import APPLICATION_ID, SCHEMA_VERSION, DatabaseInUse, StoreError, owner_pid
from .sqlite import SqliteStore

if TYPE_CHECKING:
    from ..commit import Change


@runtime_checkable
class Store(Protocol):
    """What the engine asks of a store. Every write commits before it returns, or raises and leaves
    the store as it was; the engine changes its memory only after a write returned."""

    def load_executions(self) -> list[Execution]:
        """Every execution kept, with its operations (in recorded order) and full history."""

    def create_execution(self, ex: Execution) -> None:
        """Persist a new execution (its row, its operations and events)."""

    def commit(self, ex: Execution, change: Change) -> None:
        """Persist one change of ``ex`` before the engine applies it (``durable_sync.local.commit``): its
        operation records, its new events (numbered, not in ``ex.events`` yet), and the execution's
        fields as the change leaves them (``ex``'s own, overridden by ``change.fields``)."""

    def delete_execution(self, ex: Execution) -> None:
        """Remove the execution with its operations and history."""

    def attach(self, engine: Any) -> None:
        """Called once the engine adopted the loaded executions, before it runs anything."""

    def close(self) -> None:
        """Release the store (files, threads)."""


class MemoryStore:
    """Keeps nothing beyond the engine's own memory: for tests and throwaway runs."""

    def load_executions(self) -> list[Execution]:
        return []

    def create_execution(self, ex: Execution) -> None:
        pass

    def commit(self, ex: Execution, change: Change) -> None:
        pass

    def delete_execution(self, ex: Execution) -> None:
        pass

    def attach(self, engine: Any) -> None:
        pass

    def close(self) -> None:
        pass


def open_store(db: Any) -> Store:
    """``":memory:"`` (or None): a MemoryStore; a path: the SqliteStore on that file; a ``Store``: itself."""
    if db is None or db == ":memory:":
        return MemoryStore()
    if isinstance(db, str):
        if not db:
            raise ValidationError("db is a database file path, or ':memory:' for no persistence; got ''")
        return SqliteStore(db)
    if isinstance(db, Store):
        return db
    raise ValidationError(f"db must be a database file path, ':memory:' or a Store, got {type(db).__name__}")


__all__ = ["APPLICATION_ID", "CALLBACK_KINDS", "CONTROL_KINDS", "DatabaseInUse", "INBOX_KINDS", "MemoryStore",
           "Reader", "SCHEMA_VERSION", "SqliteStore", "Store", "StoreError", "deliver", "deliver_callback",
           "open_store", "owner_pid"]
