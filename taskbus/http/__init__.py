"""taskbus over HTTP: the management REST API, Prometheus metrics and the web dashboard.

Optional: ``pip install 'taskbus[http]'``; ``import taskbus`` never imports FastAPI. What an
application mounts::

    from taskbus.http import taskbus_router
    app.include_router(taskbus_router(client))

``create_app`` builds the whole app (REST under ``/tasks``, ``/runs``, ``/health``, ``/stats``;
``/metrics``; the dashboard at ``/``) that ``taskbus up --http 127.0.0.1:7421`` serves with
uvicorn. Every request carries a bearer token (``taskbus keys token <identity>``) and acts as
that bus identity, under the same ACL as on the bus (docs/http.md).
"""

from taskbus.http.app import create_app, taskbus_router
from taskbus.http.auth import Caller, Clients, TokenBook

__all__ = ["Caller", "Clients", "TokenBook", "create_app", "taskbus_router"]
