"""Serving the HTTP app with uvicorn inside the running event loop (``taskbus up --http``).

The listening socket is bound before uvicorn starts, so a taken port fails at once with one
line, a port 0 gets a free one whose number is known at once, and a request that arrives before
uvicorn accepts waits in the backlog. Only loopback hosts are served unless ``allow_remote``:
the API speaks plain HTTP, so a token sent over the network could be read on the way (put a
TLS-terminating proxy in front instead; docs/http.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from config.errors import TaskbusError

log = logging.getLogger("taskbus.http")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7421
STOP_S = 5.0  # how long open connections get to finish at shutdown


class HttpAddressError(TaskbusError, ValueError):
    """A ``--http`` address that is malformed, remote without consent, or cannot be bound."""


@dataclass(frozen=True, slots=True)
class HttpAddress:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HttpAddress:
        """``HOST:PORT``, ``HOST`` (port 7421), ``:PORT`` (host 127.0.0.1) or ``[v6]:PORT``."""
        text = text.strip()
        host, port_text = text, ""
        if text.startswith("["):
            host, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise HttpAddressError(f"--http {text!r}: expected [ADDRESS]:PORT")
            port_text = rest[1:]
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        host = host or DEFAULT_HOST
        if not port_text:
            return cls(host, DEFAULT_PORT)
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise HttpAddressError(f"--http {text!r}: the port must be a number 0..65535")
        return cls(host, int(port_text))

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def require_local(address: HttpAddress, *, allow_remote: bool) -> HttpAddress:
    """``address`` if it is loopback or ``allow_remote``; else HttpAddressError saying why."""
    if not (address.loopback or allow_remote):
        raise HttpAddressError(
            f"--http {address.host}: not a loopback address; the API is plain HTTP, so tokens "
            "would cross the network readable. Serve it on 127.0.0.1 behind a TLS proxy, or "
            "pass --http-allow-remote if the network is trusted"
        )
    return address


class HttpServer:
    """uvicorn serving ``app`` on ``address`` in the running loop, until ``stop``."""

    def __init__(self, app: ASGIApp, address: HttpAddress, *, allow_remote: bool = False) -> None:
        require_local(address, allow_remote=allow_remote)
        self.app = app
        self.address = address
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None

    @property
    def url(self) -> str:
        """``http://host:port``, with the port bound (once started)."""
        port = self.address.port
        if self._socket is not None:
            port = int(self._socket.getsockname()[1])
        host = f"[{self.address.host}]" if ":" in self.address.host else self.address.host
        return f"http://{host}:{port}"

    async def start(self) -> str:
        """Binds, starts serving, and returns the URL; HttpAddressError if it cannot bind."""
        self._socket = _bind(self.address)
        config = uvicorn.Config(
            self.app,
            lifespan="on",  # the routers' lifespans: the metrics gatherer counts from the start
            log_config=None,
            log_level=logging.WARNING,
            access_log=False,
            timeout_graceful_shutdown=int(STOP_S),
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="taskbus-http"
        )
        return self.url

    async def stop(self) -> None:
        server, task, sock = self._server, self._task, self._socket
        self._server = self._task = self._socket = None
        if server is not None and task is not None:
            server.should_exit = True
            try:
                await asyncio.wait_for(task, STOP_S + 5)
            except TimeoutError:
                log.warning("http server did not stop in time; cancelled")
        if sock is not None:
            sock.close()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handlers: the process's owner (``taskbus up``) has them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(address: HttpAddress) -> socket.socket:
    try:
        infos = socket.getaddrinfo(
            address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise HttpAddressError(f"--http {address.host}: {exc.strerror}") from exc
    family, kind, proto, _, where = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(where)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise HttpAddressError(
            f"cannot listen on http://{address.host}:{address.port}: {exc.strerror}"
        ) from exc
    sock.setblocking(False)
    return sock
