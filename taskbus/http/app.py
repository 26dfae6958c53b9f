"""The mountable router (``taskbus_router``) and the whole app (``create_app``).

::

    from taskbus.http import taskbus_router
    app.include_router(taskbus_router(client))             # acts as the client's identity
    app.include_router(taskbus_router(Clients(settings)))  # as each token's identity
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, FastAPI, Request

from config import load_settings
from taskbus.client import TaskbusClient
from taskbus.http.auth import GATE_ATTRIBUTE, Clients, Gate
from taskbus.http.dashboard import dashboard_router
from taskbus.http.errors import ERROR_RESPONSES, ErrorRoute, install_handlers
from taskbus.http.metrics import metrics_router
from taskbus.http.routes_runs import add_run_routes
from taskbus.http.routes_system import add_system_routes
from taskbus.http.routes_tasks import add_task_routes
from taskbus.http.tokens import TokenBook

log = logging.getLogger("taskbus.http")

TITLE = "taskbus"
DESCRIPTION = (
    "The management API of a running taskbus (docs/http.md). Every request carries a bearer "
    "token (`taskbus keys token <identity>`) and acts as that bus identity, under the bus's "
    "ACL and owner checks. Errors are `{code, reason}`."
)


def taskbus_router(
    clients: TaskbusClient | Clients, *, tokens: TokenBook | None = None
) -> APIRouter:
    """The REST API (``/tasks``, ``/runs``, ``/health``, ``/stats``, ``/session``), its errors
    answered as ``{code, reason}`` whichever app mounts it.

    ``clients``: a ``Clients`` pool acts as each token's identity; a single ``TaskbusClient``
    (an embedding's) acts as its own identity and answers tokens of any other with 403.
    ``tokens``: default, those of the pool's keys directory, or for a single client of
    ``load_settings()``'s (where ``taskbus keys token`` writes, run with the same environment).
    """
    return _router(_gate(clients, tokens))


def create_app(
    clients: TaskbusClient | Clients,
    *,
    tokens: TokenBook | None = None,
    metrics_client: TaskbusClient | None = None,
) -> FastAPI:
    """The whole HTTP surface: the REST API, ``/metrics`` (read through ``metrics_client``;
    default: ``clients`` if it is one client) and the dashboard at ``/``; the OpenAPI document
    at ``/openapi.json``. The app does not own ``clients``: close a pool after the server
    stops."""
    gate = _gate(clients, tokens)
    # No /docs or /redoc: they load scripts from a CDN; /openapi.json is the document.
    app = FastAPI(
        title=TITLE, description=DESCRIPTION, version=_version(), docs_url=None, redoc_url=None
    )
    install_handlers(app)
    setattr(app.state, GATE_ATTRIBUTE, gate)  # for the routers below: they use authenticated
    app.include_router(_router(gate))
    if metrics_client is None and isinstance(clients, TaskbusClient):
        metrics_client = clients
    if metrics_client is not None:
        app.include_router(metrics_router(metrics_client))
    else:
        log.info("http: /metrics is not served (no metrics_client for a pool of clients)")
    app.include_router(dashboard_router())
    return app


def _gate(clients: TaskbusClient | Clients, tokens: TokenBook | None) -> Gate:
    if tokens is None:
        settings = clients.settings if isinstance(clients, Clients) else load_settings()
        tokens = TokenBook(settings.paths.keys_dir)
    return Gate(clients, tokens)


def _router(gate: Gate) -> APIRouter:
    async def through_gate(request: Request) -> None:  # async: no thread hop per request
        setattr(request.state, GATE_ATTRIBUTE, gate)

    router = APIRouter(
        route_class=ErrorRoute,
        dependencies=[Depends(through_gate)],
        responses=ERROR_RESPONSES,
    )
    add_task_routes(router)
    add_run_routes(router)
    add_system_routes(router)
    return router


def _version() -> str:
    from taskbus.cli.parser import version  # noqa: PLC0415 - the CLI's one reading of it

    return version()
