"""``ActorSystem.stop`` stops actors in stages, highest ``stop_rank`` first (issue 14, point 5):
an actor stopping can still ask the services ranked below it, as the scheduler releases its lease
through the store; unranked actors stop in reverse spawn order."""

from __future__ import annotations

import asyncio

from actors import Actor, ActorSystem, on_request
from actors.supervision import StopRank, stop_stages
from bus import Envelope
from bus.envelope import Payload


class Service(Actor):
    """Answers ``service.*`` until it stops; says when it stopped."""

    name = "service"

    def __init__(self, stopped: list[str], label: str = "service") -> None:
        super().__init__()
        self.stopped = stopped
        self.label = label

    @on_request("service.")
    async def answer(self, request: Envelope) -> Payload:
        return {"answered_while": list(self.stopped)}

    async def on_stop(self) -> None:
        self.stopped.append(self.label)


class Leaseholder(Actor):
    """On stop, hands something back through the service, as the scheduler its lease."""

    name = "leaseholder"

    def __init__(self, stopped: list[str], replies: list[Payload]) -> None:
        super().__init__()
        self.stopped = stopped
        self.replies = replies

    async def on_stop(self) -> None:
        reply = await self.ask("service.release", {}, timeout=2.0)
        self.replies.append(reply.payload)
        self.stopped.append("leaseholder")


def test_stages_go_from_the_highest_rank_down_and_keep_a_rank_together() -> None:
    ranks = {"health": 0, "store": 1, "scheduler": 3, "executor-a": 2, "executor-b": 2}
    assert stop_stages(ranks) == [
        ["scheduler"],
        ["executor-a", "executor-b"],
        ["store"],
        ["health"],
    ]
    assert stop_stages({}) == []


async def test_a_producer_stops_first_and_still_reaches_the_service_it_uses(
    system: ActorSystem,
) -> None:
    stopped: list[str] = []
    replies: list[Payload] = []
    # spawned in the order Taskbus uses: the service before whoever needs it
    await system.spawn(lambda: Service(stopped, "observer"), name="observer", stop_rank=0)
    await system.spawn(lambda: Service(stopped), name="service", stop_rank=StopRank.SERVICE)
    await system.spawn(lambda: Leaseholder(stopped, replies), stop_rank=StopRank.PRODUCER)

    report = await asyncio.wait_for(system.stop(deadline_s=5.0), 10)

    assert report.clean, report.cancelled
    assert replies == [{"answered_while": []}]  # the service answered: it was still up
    assert stopped == ["leaseholder", "service", "observer"]


async def test_unranked_actors_stop_in_reverse_spawn_order(system: ActorSystem) -> None:
    stopped: list[str] = []
    for label in ("first", "second", "third"):
        await system.spawn(lambda label=label: Service(stopped, label), name=label)  # type: ignore[misc]

    await asyncio.wait_for(system.stop(deadline_s=5.0), 10)

    assert stopped == ["third", "second", "first"]
