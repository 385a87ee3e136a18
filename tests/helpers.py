"""Small helpers shared by the project's tests (pytest puts tests/ on sys.path)."""
from __future__ import annotations


def events(engine, arn, *types, name=None):
    """History events of ``arn``, optionally only of the given types and operation name."""
    out = [e for e in engine.history(arn) if not types or e["EventType"] in types]
    if name is not None:
        out = [e for e in out if e.get("Name") == name]
    return out
