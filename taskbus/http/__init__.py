"""taskbus over HTTP: the management REST API, Prometheus metrics and the web dashboard.

Optional: ``pip install 'taskbus[http]'``; ``import taskbus`` never imports FastAPI, and
``taskbus.http.tokens`` (what ``taskbus keys token`` uses) needs none of it. What an
application mounts::

    from taskbus.http import taskbus_router
    app.include_router(taskbus_router(client))

``create_app`` builds the whole app (REST under ``/tasks``, ``/runs``, ``/health``, ``/stats``;
``/metrics``; the dashboard at ``/``) that ``taskbus up --http 127.0.0.1:7421`` serves with
uvicorn. Every request carries a bearer token (``taskbus keys token <identity>``) and acts as
that bus identity, under the same ACL as on the bus (docs/http.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskbus.http.app import create_app, taskbus_router
    from taskbus.http.auth import Caller, Clients, Gate, authenticated
    from taskbus.http.serving import HttpAddress, HttpServer
    from taskbus.http.tokens import TokenBook

__all__ = [
    "Caller",
    "Clients",
    "Gate",
    "HttpAddress",
    "HttpServer",
    "TokenBook",
    "authenticated",
    "create_app",
    "taskbus_router",
]

_HOMES = {
    "create_app": "taskbus.http.app",
    "taskbus_router": "taskbus.http.app",
    "Caller": "taskbus.http.auth",
    "Clients": "taskbus.http.auth",
    "Gate": "taskbus.http.auth",
    "authenticated": "taskbus.http.auth",
    "HttpAddress": "taskbus.http.serving",
    "HttpServer": "taskbus.http.serving",
    "TokenBook": "taskbus.http.tokens",
}


def __getattr__(name: str) -> Any:
    """The public names, each imported on first use: the tokens need no FastAPI."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'taskbus.http' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
