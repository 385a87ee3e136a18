"""The embedded local engine: run durable handlers on one machine, no AWS."""
from .engine import ExecutionResult, InProcessClient, LocalEngine
from .service import ServiceError

__all__ = ["LocalEngine", "ExecutionResult", "InProcessClient", "ServiceError"]
