"""Helpers of the actor tests (not collected): actor factories and broker statistics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from actors import Actor, ActorSystem
from bus import BusClient

A = TypeVar("A", bound=Actor)


def serially(make: Callable[[int], A]) -> Callable[[], A]:
    """A factory making instance 1, 2, 3... (``make(serial)``): every restart is a new serial."""
    made = 0

    def factory() -> A:
        nonlocal made
        made += 1
        return make(made)

    return factory


async def spawn_instance(system: ActorSystem, make: Callable[[], A]) -> A:
    """Spawn an actor and return its first instance, for a test to look into."""
    instances: list[A] = []

    def factory() -> A:
        instances.append(make())
        return instances[-1]

    await system.spawn(factory)
    return instances[0]


async def queue_stats(client: BusClient, queue: str) -> dict[str, Any]:
    """The broker's figures for ``queue``, plus its global ``discarded`` and ``acked`` counters."""
    reply = await client.ask("bus.stats", timeout=5)
    stats: dict[str, Any] = dict(reply.payload["queues"].get(queue, {}))
    for counter in ("discarded", "acked"):
        stats[counter] = reply.payload["counters"].get(counter, 0)
    return stats
