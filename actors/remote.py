"""A client of a running taskbus: asks its actors over the bus as an authenticated identity.

Used by the CLI; a program on another process or host uses it the same way::

    async with RemoteTaskbus.connect(load_settings()) as taskbus:
        print(await taskbus.ask("scheduler.stats"))

It connects to the first of ``bus.endpoints`` over tcp+CURVE (or ipc), with the identity's keypair
from the keys directory and the broker's public key found there.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bus import AskTimeout, AuthError, BusClient, KeysDirectory, RemoteError
from bus.envelope import Payload
from config.errors import TaskbusError
from config.settings import Settings

DEFAULT_TIMEOUT_S = 10.0


class Unreachable(TaskbusError):
    """No running taskbus answered at the endpoint."""


class Refused(TaskbusError):
    """The system answered with an error; ``code`` says which (``invalid``, ``not_found``...)."""

    def __init__(self, topic: str, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{topic}: {code}: {reason}")


class RemoteTaskbus:
    def __init__(self, client: BusClient, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.client = client
        self.timeout_s = timeout_s

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        settings: Settings,
        *,
        identity: str = "cli",
        endpoint: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> AsyncIterator[RemoteTaskbus]:
        keys = KeysDirectory(settings.paths.keys_dir)
        target = endpoint or settings.endpoints[0]
        client = BusClient(
            target,
            identity=identity,
            keypair=keys.identity_keypair(identity),
            server_key=keys.broker_public_key(),
            settings=settings.bus,
        )
        try:
            await client.start(timeout=timeout_s)
        except (AuthError, TimeoutError, OSError) as exc:
            raise Unreachable(f"no taskbus answers at {target} ({exc})") from exc
        try:
            yield cls(client, timeout_s=timeout_s)
        finally:
            await client.stop()

    async def scheduler_stats(self, wait_s: float = 0.0) -> dict[str, Any]:
        """``scheduler.stats``; waits up to ``wait_s`` for a scheduler to lead (one takes the
        lease moments after start, or a lease TTL after its predecessor died)."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            try:
                return await self.ask("scheduler.stats")
            except Unreachable:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
            await asyncio.sleep(0.05)

    async def ask(self, topic: str, payload: Payload | None = None) -> dict[str, Any]:
        """The reply's payload; Refused for an error reply, Unreachable if none came."""
        try:
            reply = await self.client.ask(topic, payload or {}, self.timeout_s)
        except RemoteError as exc:
            if exc.code == "no_responder":
                raise Unreachable(f"nothing in the running taskbus answers {topic!r}") from exc
            raise Refused(topic, exc.code, exc.reason) from exc
        except AskTimeout as exc:
            raise Unreachable(str(exc)) from exc
        return dict(reply.payload)
