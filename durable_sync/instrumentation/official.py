"""Plugins written for the official AWS SDK (``aws_durable_execution_sdk_python``), run by durable_sync.

An official plugin's hooks take the official info classes (enums for types and statuses, an
``ErrorObject`` for errors). :class:`OfficialPlugin` wraps one and converts each of our info
objects before calling it; an official factory's ``create_plugin(info)`` gets the invocation's
official ``InvocationStartInfo``. The official SDK is imported only when such a plugin is used.
"""
from __future__ import annotations

from typing import Any, Optional

from . import api

_OFFICIAL_MODULE = "aws_durable_execution_sdk_python.plugin"


def is_official_plugin(obj: Any) -> bool:
    """An instance of the official ``DurableInstrumentationPlugin`` (checked without importing it)."""
    return any(cls.__name__ == "DurableInstrumentationPlugin" and cls.__module__ == _OFFICIAL_MODULE
               for cls in type(obj).__mro__)


def _modules() -> tuple[Any, Any]:
    from aws_durable_execution_sdk_python import lambda_service, plugin
    return plugin, lambda_service


def _error(error: Optional[dict]) -> Any:
    if error is None:
        return None
    _, ls = _modules()
    stack = error.get("StackTrace")
    return ls.ErrorObject(message=error.get("ErrorMessage"), type=error.get("ErrorType"),
                          data=error.get("ErrorData"), stack_trace=list(stack) if stack is not None else None)


def _fields(info: api.OperationInfo) -> dict[str, Any]:
    plugin, ls = _modules()
    return {
        "operation_id": info.operation_id,
        "operation_type": plugin.OperationType(info.operation_type),
        "sub_type": info.sub_type,
        "name": info.name,
        "parent_id": info.parent_id,
        "start_time": info.start_time,
        "end_time": info.end_time,
        "is_replayed": info.is_replayed,
        "status": ls.OperationStatus(info.status) if info.status else None,
        "result": info.result,
        "error": _error(info.error),
        "attempt": info.attempt,
    }


def _operations(ops: dict[str, api.OperationInfo]) -> dict[str, Any]:
    plugin, _ = _modules()
    return {op_id: plugin.OperationInfo(**_fields(info)) for op_id, info in ops.items()}


def start_info(info: api.InvocationStartInfo) -> Any:
    plugin, _ = _modules()
    return plugin.InvocationStartInfo(
        request_id=info.request_id, execution_arn=info.execution_arn, is_first_invocation=info.is_first_invocation,
        execution_start_time=info.execution_start_time, operations=_operations(info.operations),
        updated_operations=_operations(info.updated_operations))


def create(factory: Any, info: api.InvocationStartInfo) -> Any:
    """Call an official factory's ``create_plugin`` with the official start info; the plugin it returns
    receives that same object in ``on_invocation_start``."""
    official_info = start_info(info)
    made = factory.create_plugin(official_info)
    return OfficialPlugin(made, official_info) if is_official_plugin(made) else made


class OfficialPlugin(api.InstrumentationPlugin):
    """Runs an official-SDK plugin: each hook converts the info and calls the official hook."""

    def __init__(self, plugin: Any, official_start_info: Any = None):
        self.plugin = plugin
        self._start_info = official_start_info

    def on_invocation_start(self, info: api.InvocationStartInfo) -> None:
        self.plugin.on_invocation_start(self._start_info if self._start_info is not None else start_info(info))

    def on_invocation_end(self, info: api.InvocationEndInfo) -> None:
        plugin, _ = _modules()
        self.plugin.on_invocation_end(plugin.InvocationEndInfo(
            request_id=info.request_id, execution_arn=info.execution_arn,
            is_first_invocation=info.is_first_invocation, execution_start_time=info.execution_start_time,
            operations=_operations(info.operations), status=plugin.InvocationStatus(info.status),
            error=_error(info.error)))

    def on_operation_start(self, info: api.OperationStartInfo) -> None:
        plugin, _ = _modules()
        self.plugin.on_operation_start(plugin.OperationStartInfo(**_fields(info)))

    def on_operation_end(self, info: api.OperationEndInfo) -> None:
        plugin, _ = _modules()
        self.plugin.on_operation_end(plugin.OperationEndInfo(**_fields(info)))

    def on_operation_change(self, info: api.OperationChangeInfo) -> None:
        plugin, _ = _modules()
        self.plugin.on_operation_change(plugin.OperationChangeInfo(
            execution_arn=info.execution_arn, updated_operations=_operations(info.updated_operations),
            operations=_operations(info.operations)))

    def on_user_function_start(self, info: api.UserFunctionStartInfo) -> None:
        plugin, _ = _modules()
        self.plugin.on_user_function_start(plugin.UserFunctionStartInfo(
            **_fields(info), is_replay_children=bool(info.is_replay_children)))

    def on_user_function_end(self, info: api.UserFunctionEndInfo) -> None:
        plugin, _ = _modules()
        self.plugin.on_user_function_end(plugin.UserFunctionEndInfo(
            **_fields(info), is_replay_children=bool(info.is_replay_children),
            outcome=plugin.UserFunctionOutcome(info.outcome)))
