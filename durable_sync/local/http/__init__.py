"""HTTP façade of the local engine: the Lambda REST API, so unmodified boto3 and the AWS CLI work.

It answers every durable-execution operation of the botocore ``lambda`` model (checkpoint, state,
get, history, list by function, stop, callback success / failure / heartbeat; delete, pause and
resume where the installed botocore has them) and ``Invoke`` for the functions registered with it.

- ``protocol``: the botocore model's rest-json routing, input coercion and output rendering;
- ``api``: ``LambdaApi``, the operations over a ``LocalEngine`` (no HTTP);
- ``server``: the HTTP server; ``start_server(engine)`` serves on a thread and returns the URL and a
  stop handle. ``durable-sync serve`` is a thin command over it.
"""
from .api import DEFAULT_INVOKE_TIMEOUT, LambdaApi, named_function
from .protocol import ApiError, Router, service_model
from .server import DEFAULT_HOST, DEFAULT_PORT, LambdaHttpServer, RunningServer, make_server, serve, start_server

__all__ = ["ApiError", "DEFAULT_HOST", "DEFAULT_INVOKE_TIMEOUT", "DEFAULT_PORT", "LambdaApi", "LambdaHttpServer",
           "Router", "RunningServer", "make_server", "named_function", "serve", "service_model", "start_server"]
