"""A handler that raises is answered, logged and survived: the actor keeps serving."""

from __future__ import annotations

import asyncio

import pytest

from actors import Actor, ActorSystem, on_event, on_request, on_work
from bus import Delivery, Envelope, Refused, RemoteError
from bus.envelope import Payload
from tests.actors.conftest import ClientFactory
from tests.actors.kit import queue_stats, spawn_instance
from tests.bus.waits import eventually


class Faulty(Actor):
    name = "faulty"
    max_work_attempts = 3

    def __init__(self) -> None:
        super().__init__()
        self.attempts: dict[str, list[int]] = {}
        self.events: list[str] = []
        self.handled = asyncio.Event()

    @on_request("faulty.ask")
    async def answer(self, request: Envelope) -> Payload:
        action = request.payload.get("do")
        if action == "raise":
            raise ValueError("bad input 42")
        if action == "refuse":
            raise Refused("not_found", "no task 'x'")
        if action == "huge":
            return {"blob": b"x" * (2 << 20)}  # over the default 1 MiB message limit
        return {"ok": action}

    @on_event("faulty.events.")
    async def event(self, event: Envelope) -> None:
        if event.topic.endswith(".bad"):
            raise KeyError("missing")
        self.events.append(event.topic)

    @on_work("faulty.jobs", credit=1)
    async def job(self, delivery: Delivery) -> None:
        key = str(delivery.envelope.payload["key"])
        self.attempts.setdefault(key, []).append(delivery.attempt)
        if delivery.attempt <= int(delivery.envelope.payload.get("fail", 0)):
            if delivery.envelope.payload.get("refuse"):
                raise Refused("invalid", "refused by the work handler")
            raise RuntimeError(f"job {key} failed")
        self.handled.set()


class OneShot(Faulty):
    name = "oneshot"
    max_work_attempts = 1


async def test_a_raising_request_handler_answers_handler_error_and_keeps_serving(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    await spawn_instance(system, Faulty)
    client = await make_client("tester")
    assert (await client.ask("faulty.ask", {"do": "one"})).payload == {"ok": "one"}

    with pytest.raises(RemoteError) as failed:
        await client.ask("faulty.ask", {"do": "raise"})
    assert failed.value.code == "handler_error"
    assert failed.value.reason == "ValueError: bad input 42"

    assert (await client.ask("faulty.ask", {"do": "two"})).payload == {"ok": "two"}
    status = system.status()["faulty"]
    assert status["state"] == "running"
    assert status["restarts"] == 0
    assert status["errors"] == 1
    assert status["last_error"] == "answer: ValueError: bad input 42"


async def test_an_answer_too_large_to_send_is_refused_and_the_actor_keeps_serving(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    faulty = await spawn_instance(system, Faulty)
    assert system.instance("faulty") is faulty
    assert system.instance("nobody") is None
    client = await make_client("tester")
    with pytest.raises(RemoteError) as failed:
        await client.ask("faulty.ask", {"do": "huge"})
    assert failed.value.code == "reply_failed"
    assert "exceeds 1048576 bytes" in failed.value.reason
    assert (await client.ask("faulty.ask", {"do": "after"})).payload == {"ok": "after"}
    assert system.status()["faulty"]["errors"] == 1


async def test_request_refused_answers_with_its_own_code(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    await spawn_instance(system, Faulty)
    client = await make_client("tester")
    with pytest.raises(RemoteError) as refused:
        await client.ask("faulty.ask", {"do": "refuse"})
    assert (refused.value.code, refused.value.reason) == ("not_found", "no task 'x'")
    assert (await client.ask("faulty.ask", {"do": "after"})).payload == {"ok": "after"}


async def test_a_raising_event_handler_does_not_stop_the_next_event(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    actor = await spawn_instance(system, Faulty)
    client = await make_client("tester")
    await client.publish("faulty.events.bad")
    await client.publish("faulty.events.good")
    await eventually(lambda: actor.events == ["faulty.events.good"], "the good event handled")
    assert system.status()["faulty"]["errors"] == 1


async def test_failing_work_is_redelivered_up_to_max_attempts_then_discarded(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    actor = await spawn_instance(system, Faulty)
    client = await make_client("tester")
    await client.enqueue("faulty.jobs", {"key": "doomed", "fail": 99})

    async def discarded() -> bool:
        stats = await queue_stats(client, "faulty.jobs")
        return (stats["discarded"], stats["pending"], stats["inflight"]) == (1, 0, 0)

    await eventually(discarded, "the job discarded by the broker")
    assert actor.attempts == {"doomed": [1, 2, 3]}
    await eventually(lambda: client.stats()["unfinished_work"] == 0, "the producer told: done")

    await client.enqueue("faulty.jobs", {"key": "next"})  # the queue is not stuck
    await asyncio.wait_for(actor.handled.wait(), 5)
    assert actor.attempts["next"] == [1]
    assert system.status()["faulty"]["errors"] == 3


async def test_work_that_fails_once_is_retried_and_acknowledged(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    actor = await spawn_instance(system, Faulty)
    client = await make_client("tester")
    await client.enqueue("faulty.jobs", {"key": "flaky", "fail": 1})
    await asyncio.wait_for(actor.handled.wait(), 5)
    assert actor.attempts == {"flaky": [1, 2]}
    stats = await queue_stats(client, "faulty.jobs")
    assert (stats["discarded"], stats["redelivered"]) == (0, 1)


async def test_max_work_attempts_is_per_actor_class(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    actor = await spawn_instance(system, OneShot)
    client = await make_client("tester")
    await client.enqueue("faulty.jobs", {"key": "once", "fail": 99})

    async def discarded() -> bool:
        return bool((await queue_stats(client, "faulty.jobs"))["discarded"] == 1)

    await eventually(discarded, "the job discarded after one attempt")
    assert actor.attempts == {"once": [1]}


async def test_request_refused_from_a_work_handler_settles_the_delivery(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    """With credit 1, an unsettled delivery would stall the queue for good."""
    actor = await spawn_instance(system, Faulty)
    client = await make_client("tester")
    await client.enqueue("faulty.jobs", {"key": "refused", "fail": 1, "refuse": True})
    await client.enqueue("faulty.jobs", {"key": "behind"})
    await eventually(lambda: "behind" in actor.attempts, "the next job delivered")
    await eventually(lambda: actor.attempts.get("refused") == [1, 2], "the refused job retried")
