"""The web dashboard: the page at ``/``, its files under ``/static/``, and ``/events``.

The page is plain HTML, CSS and JavaScript from ``taskbus/http/static`` (no build step, nothing
from the network). It needs no token to load: it reads the REST API as the identity of the
session cookie (``POST /session``), and asks for a token when it has none. ``/events`` relays,
as server-sent events, the bus events that identity may see (the ``taskbus watch`` prefixes,
subscribed through the caller's own client, so the broker's ACL decides what arrives), which
lets the page update without a reload (docs/http.md#dashboard).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, StreamingResponse

from bus import Envelope, Subscription
from config import topics
from config.errors import ConfigError, TaskbusError
from taskbus.client import TaskbusClient
from taskbus.http.auth import Caller, authenticated
from taskbus.http.errors import ApiError

log = logging.getLogger("taskbus.http.dashboard")

STATIC = Path(__file__).with_name("static")
# The files the page is made of, by name, with their types: nothing else is served.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Everything comes from this server; no inline script or style, no frames, no plugins.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# The event names of the stream, by topic prefix (EventSource's own ``error`` is not one).
KINDS = (
    (topics.STATUS_EVENTS, "status"),
    (topics.DEAD_EVENTS, "dead"),
    (topics.HEALTH, "health"),
    (topics.ERROR_EVENTS, "fault"),
)
KEEPALIVE_S = 15.0  # a comment line this often, so a proxy or a dead peer is noticed
RETRY_MS = 2000  # how soon the browser reconnects a dropped stream
MAX_STREAMS = 32  # event streams open at once (each holds a bus subscription)


def dashboard_router(
    *, keepalive_s: float = KEEPALIVE_S, max_streams: int = MAX_STREAMS
) -> APIRouter:
    """``GET /`` (the page), ``GET /static/{name}`` (its files), ``GET /dashboard/session``
    (who the page is signed in as) and ``GET /events`` (the caller's bus events as
    ``text/event-stream``; at most ``max_streams`` open at once, 429
    past that; a comment every ``keepalive_s`` while nothing happens)."""
    if not keepalive_s > 0:
        raise ConfigError("dashboard.keepalive_s", keepalive_s, "a number of seconds > 0")
    if max_streams < 1:
        raise ConfigError("dashboard.max_streams", max_streams, "an integer >= 1")
    router = APIRouter(tags=["dashboard"])
    streams = _Streams(max_streams)

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return _file("index.html")

    @router.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        if name not in FILES:
            raise HTTPException(404, f"no dashboard file {name!r}")
        return _file(name)

    @router.get("/dashboard/session", summary="Who the page's session acts as, if anyone")
    async def session(request: Request) -> dict[str, str | None]:
        """``{identity}``: the session cookie's (or bearer token's) identity, null without a
        valid one. Unlike the API it answers 200 either way: a page that is not signed in yet
        asks it first, and a browser logs every 401 as an error."""
        try:
            caller = await authenticated(request)
        except ApiError as exc:
            if exc.status != HTTPStatus.UNAUTHORIZED:
                raise
            return {"identity": None}
        return {"identity": caller.identity}

    @router.get(
        "/events",
        response_class=StreamingResponse,
        summary="The caller's bus events as server-sent events",
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(caller: Annotated[Caller, Depends(authenticated)]) -> StreamingResponse:
        """Events named ``status``, ``dead``, ``health`` and ``fault`` (``scheduler.error``),
        each ``{topic, sender, at, payload}`` as JSON (``at``: when it was published); first
        ``ready`` once the subscription is live (a page reads its data again then, so that
        nothing between its reads and the stream is lost); ``unavailable`` with a ``reason``
        ends a stream the bus could not serve."""
        streams.check()
        relay = _relay(caller, keepalive_s, streams)
        return StreamingResponse(
            relay,
            media_type="text/event-stream",
            headers={**HEADERS, "X-Accel-Buffering": "no"},
        )

    return router


def _file(name: str) -> FileResponse:
    return FileResponse(STATIC / name, media_type=FILES[name], headers=HEADERS)


class _Streams:
    """How many event streams run: a request for one more past ``limit`` is refused with 429.

    A stream counts from its first chunk to its end, so one whose response never started holds
    nothing (a few requests at once may pass the check together: the limit is a soft one)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def check(self) -> None:
        if self.count >= self.limit:
            raise HTTPException(
                429, f"too many event streams open ({self.limit}); close a dashboard tab"
            )


async def _relay(caller: Caller, keepalive_s: float, streams: _Streams) -> AsyncIterator[str]:
    """The stream's text: ``retry``, ``ready``, then every event until the client goes (the
    response is cancelled) or the bus closes the subscription."""
    client = caller.client
    streams.count += 1
    log.debug("dashboard.events open identity=%s streams=%d", caller.identity, streams.count)
    try:
        yield f"retry: {RETRY_MS}\n\n"
        try:
            subscription = await client.watch()
        except TaskbusError as exc:
            yield frame("unavailable", {"reason": str(exc)})
            return
        try:
            yield frame("ready", {"topics": list(subscription.prefixes)})
            async for text in _events(subscription, keepalive_s):
                yield text
        finally:
            await _unsubscribe(client, subscription)
    finally:
        streams.count -= 1


async def _events(subscription: Subscription, keepalive_s: float) -> AsyncIterator[str]:
    while True:
        try:
            envelope = await subscription.get(timeout=keepalive_s)
        except TimeoutError:
            yield ": keepalive\n\n"
            continue
        except TaskbusError:  # BusClosed: the client stopped
            return
        yield event_frame(envelope)


async def _unsubscribe(client: TaskbusClient, subscription: Subscription) -> None:
    try:
        await asyncio.shield(client.bus.unsubscribe(subscription))
    except (TaskbusError, asyncio.CancelledError):  # the client stopped, or the server did
        subscription.close()


def event_frame(envelope: Envelope) -> str:
    """One bus event as a server-sent event named after its topic (``KINDS``)."""
    kind = next((name for prefix, name in KINDS if envelope.topic.startswith(prefix)), "event")
    data = {
        "topic": envelope.topic,
        "sender": envelope.sender,
        "at": datetime.fromtimestamp(envelope.timestamp, UTC).isoformat(),
        "payload": envelope.payload,
    }
    return frame(kind, data)


def frame(name: str, data: Any) -> str:
    """A server-sent event: JSON on one ``data`` line (JSON escapes every line break)."""
    text = json.dumps(data, default=_plain, separators=(",", ":"), ensure_ascii=False)
    return f"event: {name}\ndata: {text}\n\n"


def _plain(value: Any) -> Any:
    """What JSON cannot carry as is: instants as ISO 8601, bytes as base64, the rest as text."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)
