"""The HTTP surface beside a running taskbus in the same process (``taskbus up --http``): a
pool of bus clients connected to its broker, the app, and uvicorn serving it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from taskbus.embedding import Taskbus
from taskbus.http.app import create_app
from taskbus.http.auth import Clients
from taskbus.http.serving import HttpAddress, HttpServer
from taskbus.http.tokens import TokenBook

log = logging.getLogger("taskbus.http")

METRICS_IDENTITY = "cli"  # /metrics reads the system's counters as the admin this host has


def local_endpoint(taskbus: Taskbus) -> str:
    """The endpoint of ``taskbus``'s broker its HTTP clients connect to: ipc if it listens
    there, else the first; every one is CURVE-authenticated."""
    endpoints = taskbus.system.broker.endpoints if taskbus.system.broker else []
    if not endpoints:
        raise ValueError("the HTTP API needs a broker endpoint other processes can reach")
    return next((e for e in endpoints if e.startswith("ipc://")), endpoints[0])


@asynccontextmanager
async def serving(
    taskbus: Taskbus, address: HttpAddress, *, allow_remote: bool = False
) -> AsyncIterator[HttpServer]:
    """The app served on ``address`` while the block runs; its clients closed after."""
    clients = Clients(taskbus.settings, endpoint=local_endpoint(taskbus))
    try:
        admin = await clients.get(METRICS_IDENTITY)
        app = create_app(clients, tokens=TokenBook(taskbus.keys), metrics_client=admin)
        server = HttpServer(app, address, allow_remote=allow_remote)
        url = await server.start()
        log.debug("http API on %s", url)
        try:
            yield server
        finally:
            await server.stop()
    finally:
        await clients.aclose()
