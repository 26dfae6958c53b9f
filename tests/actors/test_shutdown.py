"""Graceful shutdown: intake stops, in-flight handlers get until the deadline, overrunning ones are
cancelled and reported, and work not yet started goes back to its queue.

The system under test is an ``ActorSystem.connected`` over tcp+CURVE, so the broker outlives it
and can be asked what its stop left behind.
"""

from __future__ import annotations

import asyncio

import pytest

from actors import Actor, ActorSystem, on_request, on_work
from bus import BusClient, Delivery, Envelope, RemoteError
from bus.envelope import Payload
from tests.actors.conftest import ClientFactory, SystemFactory
from tests.actors.kit import queue_stats, serially, spawn_instance
from tests.bus.waits import eventually, peers


class Slow(Actor):
    """Every handler holds until the test sets ``release``."""

    name = "slow"

    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.started: list[int] = []
        self.finished: list[int] = []
        self.stopped = False

    @on_request("slow.ask")
    async def answer(self, request: Envelope) -> Payload:
        return {"n": await self._hold(int(request.payload["n"]))}

    @on_work("slow.jobs", credit=2)
    async def job(self, delivery: Delivery) -> None:
        await self._hold(int(delivery.envelope.payload["n"]))

    async def _hold(self, n: int) -> int:
        self.started.append(n)
        self.entered.set()
        await self.release.wait()
        self.finished.append(n)
        return n

    async def on_stop(self) -> None:
        self.stopped = True


SlowWorkers = tuple[ActorSystem, Slow, BusClient]


@pytest.fixture
async def slow_workers(connect_system: SystemFactory, make_client: ClientFactory) -> SlowWorkers:
    """The connected system ``workers`` running one ``Slow``, and a test client on its broker."""
    workers = await connect_system("workers", "slow")
    slow = await spawn_instance(workers, Slow)
    return workers, slow, await make_client("tester")


async def test_an_inflight_request_finishes_and_its_reply_arrives(
    slow_workers: SlowWorkers,
) -> None:
    workers, slow, client = slow_workers
    first = asyncio.create_task(client.ask("slow.ask", {"n": 1}))
    await asyncio.wait_for(slow.entered.wait(), 5)
    queued = asyncio.create_task(client.ask("slow.ask", {"n": 2}))
    await eventually(lambda: workers.status()["slow"]["mailbox"] == 1, "the second ask queued")

    stopping = asyncio.create_task(workers.stop(deadline_s=30))
    with pytest.raises(RemoteError) as refused:
        await queued  # answered as soon as intake stops
    assert refused.value.code == "shutting_down"
    assert not first.done()
    assert not stopping.done(), "stop waits for the handler in flight"

    slow.release.set()
    assert (await asyncio.wait_for(first, 5)).payload == {"n": 1}
    report = await asyncio.wait_for(stopping, 10)
    assert report.clean
    assert report.cancelled == {}
    assert slow.finished == [1]
    assert slow.stopped, "on_stop ran"
    assert workers.status()["slow"]["state"] == "stopped"


async def test_a_handler_overrunning_the_deadline_is_cancelled_and_reported(
    slow_workers: SlowWorkers,
) -> None:
    workers, slow, client = slow_workers
    asking = asyncio.create_task(client.ask("slow.ask", {"n": 1}))
    await asyncio.wait_for(slow.entered.wait(), 5)

    report = await asyncio.wait_for(workers.stop(deadline_s=0.2), 10)
    assert not report.clean
    assert list(report.cancelled) == ["slow"]
    [cancelled] = report.cancelled["slow"]
    assert cancelled.startswith("answer(slow.ask) running ")
    assert slow.finished == []
    assert slow.stopped, "on_stop runs after a cancellation too"
    with pytest.raises(RemoteError) as lost:
        await asyncio.wait_for(asking, 5)
    assert lost.value.code == "responder_lost"


async def test_work_not_started_is_requeued_and_work_in_flight_is_acked(
    slow_workers: SlowWorkers,
) -> None:
    workers, slow, client = slow_workers
    await client.enqueue("slow.jobs", {"n": 1})
    await client.enqueue("slow.jobs", {"n": 2})
    await asyncio.wait_for(slow.entered.wait(), 5)
    await eventually(lambda: workers.status()["slow"]["mailbox"] == 1, "job 2 in the mailbox")

    stopping = asyncio.create_task(workers.stop(deadline_s=30))
    consumer = await client.consume("slow.jobs", credit=10)  # another consumer
    requeued = await consumer.get(timeout=5)
    assert requeued.envelope.payload == {"n": 2}
    assert requeued.attempt == 2
    requeued.ack()
    assert not stopping.done(), "stop waits for job 1"

    slow.release.set()
    report = await asyncio.wait_for(stopping, 10)
    assert report.clean
    assert (slow.started, slow.finished) == ([1], [1])

    async def settled() -> bool:
        stats = await queue_stats(client, "slow.jobs")
        return (stats["pending"], stats["inflight"], stats["acked"]) == (0, 0, 2)

    await eventually(settled, "both jobs acknowledged at the broker")
    await eventually(lambda: client.stats()["unfinished_work"] == 0, "the producer told: done")


async def test_work_cancelled_at_the_deadline_is_redelivered(slow_workers: SlowWorkers) -> None:
    workers, slow, client = slow_workers
    await client.enqueue("slow.jobs", {"n": 1})
    await asyncio.wait_for(slow.entered.wait(), 5)

    report = await asyncio.wait_for(workers.stop(deadline_s=0.2), 10)
    [cancelled] = report.cancelled["slow"]
    assert cancelled.startswith("job(slow.jobs) running ")
    consumer = await client.consume("slow.jobs")
    again = await consumer.get(timeout=5)
    assert (again.envelope.payload, again.attempt) == ({"n": 1}, 2)
    again.ack()


class StuckOnRestart(Actor):
    """The first instance dies at once; the next one never finishes on_start."""

    name = "stuck"

    def __init__(self, serial: int, entered: asyncio.Event) -> None:
        super().__init__()
        self.serial = serial
        self.entered = entered

    async def on_start(self) -> None:
        if self.serial > 1:
            self.entered.set()
            await asyncio.Event().wait()

    async def run(self) -> None:
        raise RuntimeError("instance 1 dies")


async def test_stopping_while_a_restart_hangs_in_on_start_leaves_no_client_behind(
    connect_system: SystemFactory, make_client: ClientFactory
) -> None:
    """Regression: the half-started cell's client stayed connected (and, on an embedded broker,
    its socket made the broker's context.term() block forever)."""
    workers = await connect_system("workers", "stuck")
    entered = asyncio.Event()
    supervised = await workers.spawn(serially(lambda n: StuckOnRestart(n, entered)))
    await asyncio.wait_for(entered.wait(), 5)
    assert supervised.state == "restarting"
    client = await make_client("tester")

    report = await asyncio.wait_for(workers.stop(deadline_s=0.5), 10)
    assert report.clean

    async def gone() -> bool:
        return not any(p["identity"] in ("stuck", "workers") for p in await peers(client))

    await eventually(gone, "every client of the stopped system disconnected")
