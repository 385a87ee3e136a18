"""Persistence of the local engine: an in-memory store (the SQLite one is its own module)."""
from __future__ import annotations

from typing import Any


class MemoryStore:
    """Keeps nothing beyond the engine's own memory: for tests and throwaway runs."""

    def load_executions(self) -> list:
        return []

    def create_execution(self, ex: Any) -> None:
        pass

    def save_checkpoint(self, ex: Any, ops: dict, events: list) -> None:
        pass

    def save_execution(self, ex: Any, events: list) -> None:
        pass

    def delete_execution(self, ex: Any) -> None:
        pass

    def close(self) -> None:
        pass


def open_store(db: Any) -> Any:
    """``":memory:"`` (or None) keeps state in memory; a path will use SQLite."""
    if db is None or db == ":memory:":
        return MemoryStore()
    if not isinstance(db, str):
        return db  # an already-built store
    try:
        from .sqlite_store import SqliteStore
    except ImportError:
        return MemoryStore()
    return SqliteStore(db)
