"""The live console: the engine's executions in a browser, served by ``durable-sync serve`` under ``/console/``.

The executions list (filters, paging, auto-refresh), one execution's timeline and operation tree (the
HTML timeline's layout, updated live), and the actions a user takes from there: answer a callback,
stop, pause, resume, delete, run again with the same input. No framework, no build step, nothing
loaded from elsewhere: its pages, CSS and JavaScript are files of this package (``static/``).

- ``app.py``: the app the HTTP server mounts at ``/console`` (routes, files, JSON answers);
- ``guard.py``: who may use it (Host, Origin and a per-server token for every change);
- ``views.py``: what the pages show, as JSON, from the engine's read API and ``durable_sync.inspection``;
- ``actions.py``: the buttons, each one operation of the server's Lambda API.

``mount(server)`` serves it on a ``durable_sync.local.http`` server::

    server = make_server(engine, port=0)
    console = mount(server)            # http://127.0.0.1:PORT/console/
"""
from .app import PREFIX, Console, mount
from .guard import TOKEN_HEADER

__all__ = ["Console", "mount", "PREFIX", "TOKEN_HEADER"]
