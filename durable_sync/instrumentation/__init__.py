"""Instrumentation plugins: hooks into invocations, operations and user code (see docs/observability.md).

``api`` holds the public names (re-exported from ``durable_sync``); ``registry`` turns
``plugins=[...]`` and ``DURABLE_SYNC_PLUGINS`` into per-invocation plugins; ``rules`` says when
start / end hooks fire; ``dispatch`` calls the hooks of one invocation; ``official`` runs plugins
written for the official AWS SDK.
"""
from .api import (InstrumentationPlugin, InvocationEndInfo, InvocationStartInfo, OperationChangeInfo,
                  OperationEndInfo, OperationInfo, OperationStartInfo, UserFunctionEndInfo, UserFunctionStartInfo)

__all__ = ["InstrumentationPlugin", "InvocationStartInfo", "InvocationEndInfo", "OperationInfo",
           "OperationStartInfo", "OperationEndInfo", "OperationChangeInfo", "UserFunctionStartInfo",
           "UserFunctionEndInfo"]
