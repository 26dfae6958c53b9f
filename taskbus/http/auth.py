"""Who a request acts as: its bearer token's bus identity, through a client connected as it.

The HTTP server gets no privilege of its own on the bus. A request whose token maps to identity
X asks through a ``TaskbusClient`` connected *as X* (X's keypair in this host's keys directory),
so the broker's ACL and the scheduler's owner checks apply to it unchanged (docs/http.md).

A request carries its token as ``Authorization: Bearer <token>``, or as the ``taskbus_token``
cookie that ``POST /session`` sets for a browser page. ``authenticated`` is the FastAPI
dependency every taskbus route takes: ``caller: Caller = Depends(authenticated)``.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from fastapi import Request

from config.settings import Settings
from taskbus.client import DEFAULT_TIMEOUT_S, TaskbusClient
from taskbus.http.errors import ApiError, unauthorized
from taskbus.http.tokens import TokenBook, TokenError

COOKIE = "taskbus_token"
GATE_ATTRIBUTE = "taskbus_gate"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts as: the token's identity, and a bus client connected as it."""

    identity: str
    client: TaskbusClient


class Clients:
    """One bus client per identity, connected to this host's taskbus on first use (with the
    identity's keypair from ``settings``' keys directory) and closed by ``aclose``."""

    def __init__(
        self,
        settings: Settings,
        *,
        endpoint: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        """``endpoint``: the broker's (default: where ``TaskbusClient.connect`` looks)."""
        self.settings = settings
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self._clients: dict[str, TaskbusClient] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._stack = contextlib.AsyncExitStack()

    def connected(self) -> dict[str, TaskbusClient]:
        """The clients connected so far, by identity."""
        return dict(self._clients)

    async def get(self, identity: str) -> TaskbusClient:
        client = self._clients.get(identity)
        if client is not None:
            return client
        async with self._locks.setdefault(identity, asyncio.Lock()):
            client = self._clients.get(identity)
            if client is None:
                client = await self._stack.enter_async_context(
                    TaskbusClient.connect(
                        self.settings,
                        identity=identity,
                        endpoint=self.endpoint,
                        timeout_s=self.timeout_s,
                    )
                )
                self._clients[identity] = client
        return client

    async def aclose(self) -> None:
        self._clients.clear()
        await self._stack.aclose()


class Gate:
    """What ``authenticated`` checks a request against: the tokens, and the clients requests
    act through (a pool, or one client that serves its own identity's tokens only)."""

    def __init__(self, clients: TaskbusClient | Clients, tokens: TokenBook) -> None:
        self.clients = clients
        self.tokens = tokens

    async def caller(self, token: str | None) -> Caller:
        if not token:
            raise unauthorized("no token: send 'Authorization: Bearer <token>'")
        try:
            identity = self.tokens.identity_of(token)
        except TokenError as exc:
            raise ApiError("unavailable", f"tokens cannot be checked: {exc}") from exc
        if identity is None:
            raise unauthorized("unknown or revoked token")
        if isinstance(self.clients, Clients):
            return Caller(identity, await self.clients.get(identity))
        own = self.clients.bus.identity
        if identity != own:
            raise ApiError(
                "denied",
                f"this server acts only as {own!r}; the token is {identity!r}'s",
            )
        return Caller(identity, self.clients)


def token_of(request: Request) -> str | None:
    """The bearer token of the Authorization header, else of the session cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("the Authorization header must be 'Bearer <token>'")
        return value.strip()
    return request.cookies.get(COOKIE)


def gate_of(request: Request) -> Gate:
    """The gate of the taskbus router this request came through (``taskbus_router`` marks its
    requests), else the app's (``create_app`` sets it for its other routers)."""
    gate = getattr(request.state, GATE_ATTRIBUTE, None) or getattr(
        request.app.state, GATE_ATTRIBUTE, None
    )
    if not isinstance(gate, Gate):
        raise ApiError(
            "unavailable",
            "no taskbus gate: build the app with create_app(), or set "
            "app.state.taskbus_gate = Gate(clients, tokens)",
        )
    return gate


async def authenticated(request: Request) -> Caller:
    """FastAPI dependency: the request's caller; 401 ``unauthorized`` with ``WWW-Authenticate:
    Bearer`` for no token or an unknown or revoked one, 403 ``denied`` for an identity this
    server does not act as."""
    return await gate_of(request).caller(token_of(request))
