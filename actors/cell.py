"""The runtime around one actor instance: its bus client, its mailbox and its worker loops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from actors.actor import Actor, Route
from bus import BusClient, Delivery, Envelope, Inbox, Refused
from bus.errors import EnvelopeError
from bus.topics import check_topic
from config.actors import ActorSettings

log = logging.getLogger("taskbus.actors")

ClientFactory = Callable[[str], Awaitable[BusClient]]


@dataclass(slots=True)
class InFlight:
    route: Route
    topic: str
    started: float

    def describe(self, now: float) -> str:
        return f"{self.route.method}({self.topic}) running {now - self.started:.2f}s"


@dataclass(slots=True)
class CellStats:
    handled: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)  # handled, per topic or queue
    errors: int = 0
    last_error: str = ""
    cancelled: list[str] = field(default_factory=list)


class ActorCell:
    """Runs one actor instance until it is stopped or its ``run()`` loop dies.

    The mailbox is the actor's bounded bus inboxes (``mailbox_size`` each; work is bounded by
    credit): a flood fills them and then meets the bus's policy (events dropped and counted,
    requests answered ``busy``, work held back by the broker), so memory stays bounded.
    """

    def __init__(
        self,
        actor: Actor,
        identity: str,
        connect: ClientFactory,
        settings: ActorSettings,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.actor = actor
        self.identity = identity
        self._connect = connect
        self._settings = settings
        self._clock = clock
        self.client: BusClient | None = None
        self._inboxes: list[tuple[Route, Inbox[Any]]] = []
        self._next = 0
        self._idle: deque[asyncio.Future[None]] = deque()  # workers waiting for an item
        self._workers: list[asyncio.Task[None]] = []
        self._pumps: list[asyncio.Task[None]] = []
        self._lasting: dict[asyncio.Task[None], InFlight] = {}
        self._runner: asyncio.Task[None] | None = None
        self.inflight: dict[int, InFlight] = {}
        self.stats = CellStats()
        self.died: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        self._accepting = False
        self._requests = RequestRoutes(type(actor))

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect and run ``on_start``; messages are taken only after :meth:`open`."""
        self.client = await self._connect(self.identity)
        if type(self.actor).watches:
            await self.client.watch(*type(self.actor).watches)
        self.actor.bind(self.client)
        await self.actor.on_start()

    @property
    def waits_until_ready(self) -> bool:
        return type(self.actor).until_ready is not Actor.until_ready

    async def open(self) -> None:
        """Wait for the actor to be ready, then take messages and start its ``run()``."""
        await self.actor.until_ready()
        assert self.client is not None
        size = self._settings.mailbox_size
        for declared in self.actor.routes:
            route = _bound(self.actor, declared) if declared.kind == "work" else declared
            inbox: Inbox[Any]
            if route.kind == "event":
                inbox = await self.client.subscribe(route.pattern, maxsize=size)
            elif route.kind == "work":
                inbox = await self.client.consume(route.pattern, credit=route.credit)
            else:
                continue  # all requests share one inbox, below
            if route.lasting:
                self._pumps.append(asyncio.create_task(self._pump(route, inbox)))
            else:
                inbox.notify(self._wake_one)
            self._inboxes.append((route, inbox))
        if self._requests.served:
            inbox = await self.client.serve(*self._requests.served, maxsize=size)
            inbox.notify(self._wake_one)
            self._inboxes.append((REQUESTS, inbox))
        self._accepting = True
        self._workers = [
            asyncio.create_task(self._work(slot), name=f"{self.identity}-worker-{slot}")
            for slot in range(type(self.actor).concurrency)
        ]
        self._runner = asyncio.create_task(self._run(), name=f"{self.identity}-run")

    async def stop(self, deadline_s: float) -> list[str]:
        """Stop intake, let in-flight handlers finish until the deadline, then cancel them.

        Returns what was cancelled. Work not yet started goes back to its queue.
        """
        self._accepting = False
        deadline = self._clock() + deadline_s
        if self._runner is not None:
            self._runner.cancel()
        for pump in self._pumps:
            pump.cancel()
        client = self.client
        for route, inbox in self._inboxes:
            inbox.close()
            if client is not None and route.kind == "work":
                with contextlib.suppress(Exception):
                    await client.stop_consuming(inbox)  # type: ignore[arg-type]
            for item in inbox.get_nowait_all():
                self._refuse(route, item, "shutting_down", "the actor is stopping", unseen=True)
        self._wake_all()
        handlers = [*self._workers, *self._lasting]
        if handlers:
            remaining = max(0.0, deadline - self._clock())
            _, pending = await asyncio.wait(handlers, timeout=remaining)
            now = self._clock()
            cancelled = [
                self.inflight[id(t)].describe(now) for t in pending if id(t) in self.inflight
            ] + [self._lasting[t].describe(now) for t in pending if t in self._lasting]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            self.stats.cancelled.extend(cancelled)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.actor.on_stop(), max(0.1, deadline - self._clock()))
        await self.close()
        return self.stats.cancelled

    async def close(self) -> None:
        """Disconnect at once (after a crash): unacknowledged work is redelivered by the broker."""
        self._accepting = False
        tasks = [
            t
            for t in (*self._workers, *self._pumps, *self._lasting, self._runner)
            if t is not None and not t.done()
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.client is not None:
            await self.client.stop()
            self.client = None

    # ------------------------------------------------------------ loops

    async def _run(self) -> None:
        try:
            await self.actor.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the actor died: its supervisor decides what happens next
            if not self.died.done():
                self.died.set_result(exc)

    async def _work(self, slot: int) -> None:
        me = id(asyncio.current_task())
        loop = asyncio.get_running_loop()
        while self._accepting:
            picked = self._take()
            if picked is None:
                # each pushed item wakes one idle worker, not all of them (a shared Event woke
                # every idle worker of a 64-worker store for each request, to find nothing);
                # stop() wakes them all, so the wait needs no timeout
                waiter = loop.create_future()
                self._idle.append(waiter)
                await waiter
                continue
            route, item = picked
            topic = item.envelope.topic if isinstance(item, Delivery) else item.topic
            if route is REQUESTS:
                found = self._requests.route(topic)
                if found is None:
                    self._refuse(route, item, "unknown_topic", self._requests.unknown(topic))
                    continue
                route = found
            self.inflight[me] = InFlight(route, topic, self._clock())
            try:
                await self._dispatch(route, item)
            finally:
                del self.inflight[me]

    async def _pump(self, route: Route, inbox: Inbox[Any]) -> None:
        """A lasting work route: each item handled in a task of its own (the credit bounds how
        many), not counted in ``inflight``, so never reported stuck."""
        while self._accepting:
            item: Delivery = await inbox.get()
            task = asyncio.create_task(self._dispatch(route, item))
            self._lasting[task] = InFlight(route, item.envelope.topic, self._clock())
            task.add_done_callback(self._lasting.pop)

    def _wake_one(self) -> None:
        idle = self._idle
        while idle:
            waiter = idle.popleft()
            if not waiter.done():  # a worker cancelled while waiting leaves a done future
                waiter.set_result(None)
                return

    def _wake_all(self) -> None:
        idle, self._idle = self._idle, deque()
        for waiter in idle:
            if not waiter.done():
                waiter.set_result(None)

    def _take(self) -> tuple[Route, Any] | None:
        """Round-robin over the inboxes, so one busy topic cannot starve the others."""
        count = len(self._inboxes)
        for step in range(count):
            index = (self._next + step) % count
            route, inbox = self._inboxes[index]
            if route.lasting:
                continue  # its pump takes its items
            item = inbox.pop()
            if item is not None:
                self._next = (index + 1) % count
                return route, item
        return None

    async def _dispatch(self, route: Route, item: Any) -> None:
        client = self.client
        assert client is not None
        handler = getattr(self.actor, route.method)
        try:
            if route.read is None:
                result = await handler(item)
            else:
                result = await handler(item, _read(route, item))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            refusal = exc if isinstance(exc, Refused) else self.actor.refusal(exc)
            if refusal is None:
                self._record(route, exc)
                self._refuse(route, item, "handler_error", f"{type(exc).__name__}: {exc}")
                return
            # an answer, not a failure: one line, no traceback
            self.stats.errors += 1
            self.stats.last_error = f"{route.method}: {refusal}"
            log.info("actor %s %s refused: %s", self.identity, _what(route, item), refusal)
            self._refuse(route, item, refusal.code, refusal.reason)  # work is settled, never leaked
            return
        self.stats.handled += 1
        self.stats.by_topic[item.envelope.topic if route.kind == "work" else item.topic] += 1
        if route.kind == "request":
            try:
                client.reply(item, result if isinstance(result, dict) else {})
            except EnvelopeError as exc:  # the reply cannot be sent: over the size limit...
                self._record(route, exc)
                client.reply_error(item, "reply_failed", f"{type(exc).__name__}: {exc}")
        elif route.kind == "work":
            item.ack()

    def _record(self, route: Route, exc: Exception) -> None:
        self.stats.errors += 1
        self.stats.last_error = f"{route.method}: {type(exc).__name__}: {exc}"
        log.error("actor %s handler %s failed", self.identity, route.method, exc_info=exc)

    def _refuse(
        self, route: Route, item: Any, code: str, reason: str, *, unseen: bool = False
    ) -> None:
        """Answer a request with ``code``; hand work back (``unseen``: no handler ran it, so it
        is always requeued; else only while it has attempts left)."""
        client = self.client
        if client is None:
            return
        if route.kind == "request":
            client.reply_error(item, code, reason)
        elif route.kind == "work":
            delivery: Delivery = item
            delivery.nack(requeue=unseen or delivery.attempt < self.actor.max_work_attempts)

    # ------------------------------------------------------------ liveness

    def liveness(self) -> dict[str, Any]:
        now = self._clock()
        busy = max((now - f.started for f in self.inflight.values()), default=0.0)
        return {
            "handled": self.stats.handled,
            "errors": self.stats.errors,
            "last_error": self.stats.last_error,
            "busy_s": round(busy, 3),
            "inflight": [f.describe(now) for f in self.inflight.values()],
            "mailbox": sum(len(inbox) for _, inbox in self._inboxes),
            "mailbox_dropped": sum(inbox.dropped for _, inbox in self._inboxes),
            "degraded": self.actor.degraded(),
            "critical": self.actor.critical(),
            "metrics": self.actor.metrics(),
        }


def _bound(actor: Actor, declared: Route) -> Route:
    """A work route as ``actor`` consumes it: a family's queue named by the instance."""
    route = actor.work_route(declared)
    check_topic(route.pattern)
    if not route.pattern.startswith(declared.pattern):
        raise ValueError(f"{route.pattern!r} is not a queue of {declared.pattern!r}")
    return route


def _read(route: Route, request: Envelope) -> Any:
    """The route's reading of the request's payload; a ValueError refuses it as ``invalid``."""
    assert route.read is not None
    try:
        return route.read(request.payload)
    except Refused:
        raise
    except ValueError as exc:
        raise Refused("invalid", str(exc)) from exc


REQUESTS = Route("request", "", "")  # the inbox every request route of an actor shares


class RequestRoutes:
    """Which route takes a request topic: an exact topic first, else the longest family."""

    def __init__(self, cls: type[Actor]) -> None:
        routes = [route for route in cls.routes if route.kind == "request"]
        self._exact = {route.pattern: route for route in routes if not route.family}
        self._families = sorted(
            (route for route in routes if route.family), key=lambda r: -len(r.pattern)
        )
        self._name = cls.name or cls.__name__.lower()
        patterns = {route.pattern for route in routes}
        if routes and cls.namespace:
            patterns.add(cls.namespace)
        # what the bus is asked to deliver: each pattern not already under another one
        self.served = tuple(
            sorted(p for p in patterns if not any(p != q and p.startswith(q) for q in patterns))
        )

    def route(self, topic: str) -> Route | None:
        found = self._exact.get(topic)
        if found is not None:
            return found
        return next((r for r in self._families if topic.startswith(r.pattern)), None)

    def unknown(self, topic: str) -> str:
        return f"the {self._name} does not answer {topic!r}"


def _what(route: Route, item: Any) -> str:
    envelope = item.envelope if route.kind == "work" else item
    topic = getattr(envelope, "topic", None)
    return f"{route.method} {topic}" if topic else route.method
