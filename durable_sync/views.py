"""An execution as a text tree or an HTML timeline: ``durable_sync.inspection`` under its former name.

    from durable_sync import views
    print(views.render_tree(engine.operations(arn), engine.history(arn)))
"""
from __future__ import annotations

from .inspection import format_duration, render_html, render_tree

__all__ = ["render_tree", "render_html", "format_duration"]
