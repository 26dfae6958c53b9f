"""The Actor base class: declared handlers, lifecycle hooks and helpers to talk on the bus.

An actor declares what it handles with decorators instead of wiring subscriptions by hand::

    class Echo(Actor):
        name = "echo"

        @on_request("echo.")
        async def echo(self, request: Envelope) -> Payload:
            return {"echo": request.payload}

        @on_work("jobs.echo", credit=10)
        async def job(self, delivery: Delivery) -> None:
            ...

The runtime (:mod:`actors.cell`) subscribes, serves and consumes accordingly, feeds one bounded
mailbox, replies with what a request handler returns, and acknowledges work once its handler
returns. A handler that raises is logged and answered with an error; the actor keeps serving.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from bus import BusClient, BusError, Envelope
from bus.envelope import Payload
from bus.topics import check_prefix, check_topic

RouteKind = Literal["event", "request", "work"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

_ROUTE_ATTR = "__taskbus_route__"


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    pattern: str  # a topic prefix for events and requests, a queue name for work
    method: str
    credit: int = 0


class RequestRefused(BusError):
    """Raise from a request handler to answer with a specific error ``code``."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


def _route(kind: RouteKind, pattern: str, credit: int = 0) -> Callable[[F], F]:
    def mark(method: F) -> F:
        setattr(method, _ROUTE_ATTR, (kind, pattern, credit))
        return method

    return mark


def on_event(prefix: str) -> Callable[[F], F]:
    """Handle events whose topic starts with ``prefix`` (lossy: see docs/protocol.md)."""
    check_prefix(prefix)
    return _route("event", prefix)


def on_request(prefix: str) -> Callable[[F], F]:
    """Answer asks whose topic starts with ``prefix``; the handler's return value is the reply."""
    check_prefix(prefix)
    return _route("request", prefix)


def on_work(queue: str, credit: int = 10) -> Callable[[F], F]:
    """Consume ``queue``; the item is acknowledged when the handler returns."""
    check_topic(queue)
    if credit < 1:
        raise ValueError(f"credit for {queue!r} must be at least 1, got {credit}")
    return _route("work", queue, credit)


class Actor:
    """Subclass, set ``name``, decorate handlers; override the hooks you need.

    ``concurrency`` handlers of one actor may run at once (1: strictly one message at a time).
    ``max_work_attempts`` bounds redelivery of work whose handler raised.
    """

    name: ClassVar[str] = ""
    concurrency: ClassVar[int] = 1
    max_work_attempts: ClassVar[int] = 3
    routes: ClassVar[tuple[Route, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        found: dict[str, Route] = {}
        for klass in reversed(cls.__mro__):
            for attr, value in vars(klass).items():
                marker = getattr(value, _ROUTE_ATTR, None)
                if marker is not None:
                    kind, pattern, credit = marker
                    found[attr] = Route(kind, pattern, attr, credit)
        cls.routes = tuple(found.values())
        if cls.concurrency < 1:
            raise ValueError(f"{cls.__name__}.concurrency must be at least 1")

    def __init__(self) -> None:
        self._bus: BusClient | None = None
        self.log = logging.getLogger(f"taskbus.actor.{self.name or type(self).__name__}")

    # ----------------------------------------------------------- lifecycle hooks

    async def on_start(self) -> None:
        """Called once the actor is connected, before any message is handled."""

    async def until_ready(self) -> None:
        """Return when the actor may take messages; until then it is connected, reported as
        ``standby``, and neither its handlers nor ``run()`` start (a standby scheduler waits
        here for its lease). If it raises, the actor has died and is restarted.
        """

    def degraded(self) -> list[str]:
        """Why this actor works but not as it should (reported in its liveness, and health
        turns ``degraded``); empty when all is well."""
        return []

    def critical(self) -> list[str]:
        """Why this actor cannot do its job at all although it runs (a store that cannot read
        its file, say): reported in its liveness, and health turns ``critical``; empty when
        all is well."""
        return []

    async def on_stop(self) -> None:
        """Called after the last handler finished (or was cancelled) during shutdown."""

    async def run(self) -> None:
        """An optional background loop. If it raises, the actor has died and is restarted."""

    # ----------------------------------------------------------- talking on the bus

    def bind(self, bus: BusClient) -> None:
        self._bus = bus

    @property
    def bus(self) -> BusClient:
        if self._bus is None:
            raise BusError(f"actor {self.name!r} is not running")
        return self._bus

    @property
    def identity(self) -> str:
        return self.bus.identity

    async def publish(self, topic: str, payload: Payload | None = None) -> None:
        await self.bus.publish(topic, payload)

    async def ask(
        self, topic: str, payload: Payload | None = None, timeout: float | None = None
    ) -> Envelope:
        return await self.bus.ask(topic, payload, timeout)

    async def enqueue(self, queue: str, payload: Payload | None = None) -> bytes:
        return await self.bus.enqueue(queue, payload)
