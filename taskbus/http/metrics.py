"""``GET /metrics``: taskbus's metrics in the Prometheus text format, for admins.

``metrics_router(client)`` serves what a :class:`MetricsGatherer` on ``client`` (the server's
own admin connection, not the caller's) gathers over the bus (docs/http.md#metrics). A request
needs a bearer token (``authenticated``) whose identity has the ``admin`` role (``bus.roles``):
metrics describe every task and actor, so anyone else gets 403 ``denied``. The router's
lifespan starts the gatherer with the app and closes it after; a scrape before then starts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST

from bus.acl import Roles
from taskbus.client import TaskbusClient
from taskbus.http.auth import Caller, authenticated
from taskbus.http.errors import ERROR_RESPONSES, ApiError, ErrorRoute
from taskbus.http.metrics_gatherer import ASK_TIMEOUT_S, MetricsGatherer

ADMIN_ROLE = "admin"

__all__ = ["MetricsGatherer", "metrics_router"]


def metrics_router(
    client: TaskbusClient,
    *,
    is_admin: Callable[[str], bool] | None = None,
    ask_timeout_s: float = ASK_TIMEOUT_S,
) -> APIRouter:
    """``GET /metrics`` through ``client``, an admin's connection. ``is_admin`` tells who may
    read them (default: the ``admin`` role of ``client``'s bus settings); ``ask_timeout_s``
    bounds each source's answer, so a scrape never hangs on an actor that is down."""
    gatherer = MetricsGatherer(client, ask_timeout_s=ask_timeout_s)
    admin = is_admin or Roles(client.bus.settings.roles).member_of(ADMIN_ROLE)

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        await gatherer.start()
        try:
            yield
        finally:
            await gatherer.close()

    router = APIRouter(route_class=ErrorRoute, lifespan=lifespan, tags=["metrics"])

    @router.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "the Prometheus text format"},
            **{status: ERROR_RESPONSES[status] for status in (401, 403, 503)},
        },
        summary="Prometheus metrics (admins)",
    )
    async def metrics(caller: Annotated[Caller, Depends(authenticated)]) -> Response:
        if not admin(caller.identity):
            raise ApiError(
                "denied",
                f"{caller.identity!r} may not read the metrics: they are for identities with "
                f"the {ADMIN_ROLE!r} role",
            )
        await gatherer.start()  # idempotent: for an app whose lifespan did not run
        return Response(await gatherer.scrape(), media_type=CONTENT_TYPE_LATEST)

    return router
