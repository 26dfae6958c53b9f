"""The Actor base class: declared handlers, lifecycle hooks and helpers to talk on the bus.

An actor declares what it handles with decorators instead of wiring subscriptions by hand::

    class Echo(Actor):
        name = "echo"
        namespace = "echo."  # its topics: one no route takes is refused ``unknown_topic``

        @on_request("echo.say", read=read_say)  # one exact topic, its payload read by read_say
        async def say(self, request: Envelope, say: Say) -> Payload:
            return {"echo": say.text}

        @on_request("echo.any.")  # a family: every topic under echo.any.
        async def anything(self, request: Envelope) -> Payload:
            return {"topic": request.topic}

        @on_work("jobs.echo", credit=10)
        async def job(self, delivery: Delivery) -> None:
            ...

A request topic is exact unless it ends with ``.`` (then it is a small declared family); a class
shows every topic it serves and what each takes. ``read`` turns the payload into the handler's
argument before the handler runs: a ``ValueError`` it raises (or a ``Refused``) refuses the
request as ``invalid`` with its message. The runtime (:mod:`actors.cell`) subscribes, serves and
consumes accordingly, feeds one bounded mailbox, replies with what a request handler returns, and
acknowledges work once its handler returns. A handler that raises is logged and answered with an
error (``refusal`` may turn the actor's own failures into precise refusals); the actor keeps
serving.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

from bus import BusClient, BusError, Envelope, Refused
from bus.envelope import Payload
from bus.topics import check_prefix, check_topic

RouteKind = Literal["event", "request", "work"]
F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Reader = Callable[[Mapping[str, Any]], Any]

_ROUTE_ATTR = "__taskbus_route__"


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    pattern: str  # a topic prefix for events; a topic or family (ending in ".") for requests;
    method: str  # a queue name for work
    credit: int = 0
    read: Reader | None = None  # a request's payload into the handler's argument
    lasting: bool = False  # work: each item in a task of its own, see on_work

    @property
    def family(self) -> bool:
        """A request route that takes every topic starting with ``pattern``."""
        return self.pattern.endswith(".") or self.pattern == ""


def _route(
    kind: RouteKind,
    pattern: str,
    credit: int = 0,
    read: Reader | None = None,
    lasting: bool = False,
) -> Callable[[F], F]:
    def mark(method: F) -> F:
        setattr(method, _ROUTE_ATTR, (kind, pattern, credit, read, lasting))
        return method

    return mark


def on_event(prefix: str) -> Callable[[F], F]:
    """Handle events whose topic starts with ``prefix`` (lossy: see docs/protocol.md)."""
    check_prefix(prefix)
    return _route("event", prefix)


def on_request(topic: str, *, read: Reader | None = None) -> Callable[[F], F]:
    """Answer asks on ``topic`` (every topic under it if it ends with ``.``); the handler's
    return value is the reply. With ``read``, the handler is called as ``handler(request,
    read(request.payload))``."""
    check_prefix(topic)
    return _route("request", topic, read=read)


def on_work(
    queue: str, credit: int = 10, *, family: bool = False, lasting: bool = False
) -> Callable[[F], F]:
    """Consume ``queue``; the item is acknowledged when the handler returns, unless the handler
    acknowledged or refused it itself. ``family``: ``queue`` is a prefix (ending in ``.``) and
    each instance names its queue in it (``work_route``). ``lasting``: each item is handled in a
    task of its own (as many at once as the credit, apart from the ``concurrency`` workers),
    never reported stuck however long it takes: a handler that lasts as long as the work it
    runs."""
    if family:
        check_prefix(queue)
        if not queue.endswith("."):
            raise ValueError(f"a family of queues ends with '.', not {queue!r}")
    else:
        check_topic(queue)
    if credit < 1:
        raise ValueError(f"credit for {queue!r} must be at least 1, got {credit}")
    return _route("work", queue, credit, lasting=lasting)


class Actor:
    """Subclass, set ``name``, decorate handlers; override the hooks you need.

    ``concurrency`` handlers of one actor may run at once (1: strictly one message at a time).
    ``max_work_attempts`` bounds redelivery of work whose handler raised. Events it publishes
    under a prefix of ``watches`` are not sent while nobody subscribes to them
    (``BusClient.watch``).
    """

    name: ClassVar[str] = ""
    namespace: ClassVar[str] = ""  # its request topics: one no route takes is ``unknown_topic``
    watches: ClassVar[tuple[str, ...]] = ()
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
                    kind, pattern, credit, read, lasting = marker
                    found[attr] = Route(kind, pattern, attr, credit, read, lasting)
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

    def metrics(self) -> dict[str, float]:
        """Numbers this actor reports for monitoring, by name (``runs_in_progress``...):
        sent in its liveness, passed on in health's report of it, and served by the HTTP
        ``/metrics`` (docs/http.md#metrics); empty by default. Must not raise."""
        return {}

    async def on_stop(self) -> None:
        """Called after the last handler finished (or was cancelled) during shutdown."""

    def refusal(self, error: Exception) -> Refused | None:
        """The refusal a request handler's ``error`` is answered with (None: a handler failure,
        logged with its traceback and answered ``handler_error``). One place per actor that turns
        its own failures (a store's NotFound, say) into precise codes."""
        return None

    def work_route(self, route: Route) -> Route:
        """A work route as this instance consumes it: as declared by default. An actor whose
        queue is known only once constructed (an executor's: its category's) declares the
        family and returns ``dataclasses.replace(route, pattern=queue, credit=...)``."""
        return route

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
