"""MetricsGatherer: taskbus's Prometheus metrics, gathered from its actors over the bus.

Two halves, both through one ``TaskbusClient`` (an admin's: it reads every task's events and
asks ``scheduler.stats`` and ``bus.stats``), so the actors may run in any process on any host:

- a subscription to the status and dead-letter events, folded as they come into counters and
  histograms (:mod:`.metrics_events`);
- at every scrape, the leading scheduler, the health actor and the broker asked at once, each
  within ``ask_timeout_s``, their replies turned into families (:mod:`.metrics_scrape`). A source
  that does not answer in time, or whose reply cannot be read, is left out of that scrape:
  ``taskbus_up{source}`` is 0 for it and ``taskbus_scrape_errors_total{source}`` counts it. A
  scrape never waits longer than ``ask_timeout_s``.

The metrics live in the gatherer's own ``CollectorRegistry``, never prometheus_client's global
one, so two gatherers (two taskbus systems) can live in one process::

    gatherer = MetricsGatherer(client)
    await gatherer.start()
    text = await gatherer.scrape()  # the Prometheus text format
    await gatherer.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

from bus import Subscription
from config import topics
from config.errors import TaskbusError
from taskbus.client import TaskbusClient
from taskbus.http.metrics_events import EventMetrics
from taskbus.http.metrics_scrape import bus_families, health_families, scheduler_families

log = logging.getLogger("taskbus.http.metrics")

ASK_TIMEOUT_S = 2.0
EVENTS = (topics.STATUS_EVENTS + ".", topics.DEAD_EVENTS + ".")

Ask = Callable[[TaskbusClient], Awaitable[Mapping[str, Any]]]
Read = Callable[[Mapping[str, Any]], list[Metric]]
# Each source asked at scrape time: how to ask it, how to read its reply.
SOURCES: Mapping[str, tuple[Ask, Read]] = {
    "scheduler": (lambda client: client.stats(wait_s=0.0), scheduler_families),
    "health": (lambda client: client.ask(topics.HEALTH, wait_s=0.0), health_families),
    "bus": (lambda client: client.ask(topics.BUS_STATS, wait_s=0.0), bus_families),
}


class MetricsGatherer:
    """taskbus's metrics through ``client``; ``start`` subscribes, ``scrape`` renders."""

    def __init__(self, client: TaskbusClient, *, ask_timeout_s: float = ASK_TIMEOUT_S) -> None:
        if not ask_timeout_s > 0:
            raise ValueError(f"ask_timeout_s {ask_timeout_s!r}: expected a positive number")
        self.client = client
        self.ask_timeout_s = ask_timeout_s
        self.registry = CollectorRegistry()
        self.events = EventMetrics(self.registry)
        self.scrape_errors = Counter(
            "taskbus_scrape_errors",
            "Scrapes a source (scheduler, health, bus) did not answer in time, or answered "
            "unreadably.",
            ["source"],
            registry=self.registry,
        )
        for source in SOURCES:
            self.scrape_errors.labels(source)  # 0 until a source fails, not absent
        self._subscription: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._dropped_before = 0  # by subscriptions closed since

    @property
    def watching(self) -> bool:
        """Whether the events are followed (between ``start`` and ``close``)."""
        return self._subscription is not None

    async def start(self) -> None:
        """Follow the status and dead-letter events from now on; idempotent."""
        async with self._starting:
            if self._subscription is not None:
                return
            subscription = await self.client.watch(*EVENTS)
            self._subscription = subscription
            self._reader = asyncio.create_task(self._read(subscription), name="metrics-events")

    async def close(self) -> None:
        """Stop following the events; the counters keep their values. Idempotent."""
        subscription, reader = self._subscription, self._reader
        self._subscription = self._reader = None
        if subscription is not None:
            with contextlib.suppress(TaskbusError):  # a stopped client has no subscription left
                await self.client.bus.unsubscribe(subscription)
            subscription.close()
            self._dropped_before += subscription.dropped
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)

    async def scrape(self) -> bytes:
        """Every metric in the Prometheus text format, the asked ones fresh from this scrape."""
        names = list(SOURCES)
        answers = await asyncio.gather(*(self._families(name) for name in names))
        asked = dict(zip(names, answers, strict=True))
        return generate_latest(_Scrape(self.registry, self._scraped(asked)))

    async def _read(self, subscription: Subscription) -> None:
        async for event in subscription:
            try:
                self.events.take(event)
            except Exception:  # a bug must not stop the counting of the events after it
                log.exception("metrics.event topic=%s sender=%s", event.topic, event.sender)

    async def _families(self, source: str) -> list[Metric] | None:
        """The source's families; None (counted, logged) if it did not answer in time or its
        reply could not be read."""
        ask, read = SOURCES[source]
        try:
            async with asyncio.timeout(self.ask_timeout_s):
                reply = await ask(self.client)
            return read(reply)
        except TimeoutError:
            why = f"no answer within {self.ask_timeout_s:g}s"
        except (TaskbusError, ValueError) as exc:
            why = f"{type(exc).__name__}: {exc}"
        self.scrape_errors.labels(source).inc()
        log.warning("metrics.scrape source=%s error=%s", source, why)
        return None

    def _scraped(self, asked: Mapping[str, list[Metric] | None]) -> list[Metric]:
        up = GaugeMetricFamily(
            "taskbus_up",
            "1 if the source (scheduler, health, bus) answered this scrape in time, else 0.",
            labels=["source"],
        )
        for source, families in asked.items():
            up.add_metric([source], 0.0 if families is None else 1.0)
        dropped = CounterMetricFamily(
            "taskbus_metrics_dropped_events",
            "Status events this server's subscription dropped (its inbox was full).",
            value=self._dropped_before + (self._subscription.dropped if self._subscription else 0),
        )
        return [up, dropped, *(f for families in asked.values() for f in families or ())]


class _Scrape:
    """One scrape as a collector: the registry's metrics, then the families just asked for."""

    def __init__(self, registry: CollectorRegistry, asked: Iterable[Metric]) -> None:
        self._registry = registry
        self._asked = list(asked)

    def collect(self) -> Iterator[Metric]:
        yield from self._registry.collect()
        yield from self._asked
