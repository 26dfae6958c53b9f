"""The HTTP tests' system: a real taskbus (broker, encrypted store, scheduler, executors) and
the real HTTP app served by uvicorn on a free loopback port, both in the test's event loop, as
``taskbus up --http`` runs them (taskbus.http.hosting).

::

    async def test_x(http_taskbus: HttpTaskbus) -> None:
        async with httpx.AsyncClient(base_url=http_taskbus.url) as http:
            reply = await http.get("/tasks", headers=http_taskbus.auth("cli"))

The server runs in the test's own event loop: talk to it with ``httpx.AsyncClient`` (or async
Playwright), never with a blocking call, which would stall the server it waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bus import KeysDirectory
from config import Settings, load_settings
from taskbus.client import TaskbusClient
from taskbus.embedding import Taskbus
from taskbus.http.hosting import serving
from taskbus.http.serving import HttpAddress
from taskbus.http.tokens import TokenBook

TASK_MODULES = ("tests.http.http_tasks",)
STOP_S = 30.0


@dataclass
class HttpTaskbus:
    """A running taskbus with its HTTP API at ``url``; ``client`` is a bus client connected as
    the admin ``cli``, the way the CLI connects."""

    url: str
    client: TaskbusClient
    settings: Settings
    taskbus: Taskbus
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def keys(self) -> KeysDirectory:
        return KeysDirectory(self.settings.paths.keys_dir)

    @property
    def book(self) -> TokenBook:
        return TokenBook(self.keys)

    def token(self, identity: str) -> str:
        """A valid token of ``identity`` (its keypair created and admitted if needed), issued
        as ``taskbus keys token`` does; the same one on every call until ``revoke``."""
        if identity not in self._tokens:
            self.keys.identity_keypair(identity, create=True)
            self._tokens[identity] = self.book.issue(identity).token
        return self._tokens[identity]

    def auth(self, identity: str) -> dict[str, str]:
        """The Authorization header of ``identity``'s token."""
        return {"Authorization": f"Bearer {self.token(identity)}"}

    def revoke(self, identity: str) -> None:
        """Revokes every token of ``identity``, as ``taskbus keys token --revoke`` does."""
        self.book.revoke(identity)
        self._tokens.pop(identity, None)


def http_settings(home: Path) -> Settings:
    """Settings of a test system in ``home``: only its own environment, runs start however busy
    the machine is."""
    return load_settings(
        environ={"TASKBUS_HOME": str(home)},
        overrides={
            "scheduler.task_modules": list(TASK_MODULES),
            "resources.max_cpu_percent": 100,
            "resources.max_memory_percent": 100,
        },
    )


@pytest.fixture
async def http_taskbus(tmp_path: Path) -> AsyncIterator[HttpTaskbus]:
    settings = http_settings(tmp_path / "home")
    taskbus = Taskbus(settings, endpoints=[settings.paths.ipc_endpoint])
    await taskbus.start()
    try:
        async with (
            serving(taskbus, HttpAddress("127.0.0.1", 0)) as server,
            TaskbusClient.connect(
                settings, endpoint=settings.paths.ipc_endpoint, responder_wait_s=10.0
            ) as client,
        ):
            yield HttpTaskbus(server.url, client, settings, taskbus)
    finally:
        await asyncio.wait_for(taskbus.stop(), STOP_S)


@pytest.fixture
async def api(http_taskbus: HttpTaskbus) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of ``http_taskbus``'s server, without a token (pass ``headers=``)."""
    async with httpx.AsyncClient(base_url=http_taskbus.url, timeout=30.0) as client:
        yield client
