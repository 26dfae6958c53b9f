"""A flood meets a bounded mailbox: events are dropped and counted, requests are answered "busy",
work waits at the broker beyond the actor's credit. Memory stays bounded either way."""

from __future__ import annotations

import asyncio

import pytest

from actors import Actor, ActorSystem, on_event, on_request, on_work
from bus import Delivery, Envelope, RemoteError
from bus.envelope import Payload
from config import topics
from config.actors import ActorSettings
from tests.actors.conftest import ClientFactory
from tests.actors.kit import queue_stats, spawn_instance
from tests.bus.waits import eventually

MAILBOX = 5
FLOOD = 50


@pytest.fixture
def actor_settings() -> ActorSettings:
    return ActorSettings(mailbox_size=MAILBOX, liveness_interval_s=0.05, shutdown_deadline_s=2.0)


class Blocked(Actor):
    """Every handler holds until ``release`` is set; strictly one message at a time."""

    name = "blocked"

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.handled: list[int] = []

    async def _hold(self, n: int) -> int:
        self.entered.set()
        await self.release.wait()
        self.handled.append(n)
        return n

    @on_event("flood.events.")
    async def event(self, event: Envelope) -> None:
        await self._hold(int(event.payload["n"]))

    @on_request("flood.ask")
    async def answer(self, request: Envelope) -> Payload:
        return {"n": await self._hold(int(request.payload["n"]))}

    @on_work("flood.jobs", credit=3)
    async def job(self, delivery: Delivery) -> None:
        await self._hold(int(delivery.envelope.payload["n"]))


async def test_an_event_flood_fills_the_mailbox_and_the_rest_is_dropped_and_counted(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    blocked = await spawn_instance(system, Blocked)
    client = await make_client("tester")
    liveness = await client.subscribe(topics.LIVENESS)
    await client.publish("flood.events.x", {"n": 0})
    await asyncio.wait_for(blocked.entered.wait(), 5)
    for n in range(1, FLOOD + 1):
        await client.publish("flood.events.x", {"n": n})

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:  # every report on the way is bounded; the last one counts every drop
        event = await liveness.get(timeout=max(0.0, deadline - loop.time()))
        if event.payload["actor"] != "blocked":
            continue
        assert event.payload["mailbox"] <= MAILBOX
        if event.payload["mailbox_dropped"] == FLOOD - MAILBOX:
            assert event.payload["mailbox"] == MAILBOX
            [inflight] = event.payload["inflight"]
            assert inflight.startswith("event(flood.events.x) running ")
            break

    blocked.release.set()
    await eventually(lambda: len(blocked.handled) == 1 + MAILBOX, "the mailbox worked off")
    assert blocked.handled == list(range(MAILBOX + 1)), "the oldest were kept, in order"
    status = system.status()["blocked"]
    assert (status["mailbox"], status["mailbox_dropped"]) == (0, FLOOD - MAILBOX)


async def test_requests_beyond_the_mailbox_are_answered_busy(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    blocked = await spawn_instance(system, Blocked)
    client = await make_client("tester")
    first = asyncio.create_task(client.ask("flood.ask", {"n": 0}))
    await asyncio.wait_for(blocked.entered.wait(), 5)
    waiting = [asyncio.create_task(client.ask("flood.ask", {"n": n})) for n in range(1, 6)]
    await eventually(lambda: system.status()["blocked"]["mailbox"] == MAILBOX, "mailbox full")

    for n in (6, 7):
        with pytest.raises(RemoteError) as refused:
            await client.ask("flood.ask", {"n": n})
        assert refused.value.code == "busy"
        assert refused.value.reason == "blocked cannot take 'flood.ask' now"

    blocked.release.set()
    replies = await asyncio.wait_for(asyncio.gather(first, *waiting), 5)
    assert [reply.payload["n"] for reply in replies] == list(range(MAILBOX + 1))
    assert blocked.handled == list(range(MAILBOX + 1))


async def test_work_beyond_the_credit_stays_pending_at_the_broker(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    blocked = await spawn_instance(system, Blocked)
    client = await make_client("tester")
    for n in range(FLOOD):
        await client.enqueue("flood.jobs", {"n": n})
    await asyncio.wait_for(blocked.entered.wait(), 5)

    async def held_back() -> bool:
        stats = await queue_stats(client, "flood.jobs")
        return (stats["pending"], stats["inflight"]) == (FLOOD - 3, 3)

    await eventually(held_back, "all but the credit (3) pending at the broker")
    assert system.status()["blocked"]["mailbox"] == 2, "one in the handler, two waiting"

    blocked.release.set()
    await eventually(lambda: len(blocked.handled) == FLOOD, "every job handled")
    assert sorted(blocked.handled) == list(range(FLOOD))

    async def drained() -> bool:
        stats = await queue_stats(client, "flood.jobs")
        return (stats["pending"], stats["inflight"], stats["acked"]) == (0, 0, FLOOD)

    await eventually(drained, "every job acknowledged")
