"""An actor waiting in ``until_ready`` is connected and reported ``standby``, takes no messages
and runs no ``run()`` loop until it is ready; stopping the system while it waits is clean.
"""

from __future__ import annotations

import asyncio

import pytest

from actors import Actor, ActorSystem, on_request
from actors.system import ActorState
from bus import Envelope, RemoteError
from bus.envelope import Payload
from tests.actors.conftest import ClientFactory
from tests.actors.kit import spawn_instance


class Standby(Actor):
    name = "standby"

    def __init__(self) -> None:
        super().__init__()
        self.ready = asyncio.Event()
        self.running = asyncio.Event()

    async def until_ready(self) -> None:
        await self.ready.wait()

    async def run(self) -> None:
        self.running.set()
        await asyncio.Event().wait()

    @on_request("standby.")
    async def answer(self, request: Envelope) -> Payload:
        return {"ok": True}


async def test_a_standby_actor_serves_only_once_ready(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    actor = await spawn_instance(system, Standby)
    assert system.status()["standby"]["state"] == ActorState.STANDBY
    client = await make_client("tester")
    with pytest.raises(RemoteError) as refused:
        await client.ask("standby.ping", timeout=2)
    assert refused.value.code == "no_responder"
    assert not actor.running.is_set()

    actor.ready.set()
    await asyncio.wait_for(actor.running.wait(), 5)
    reply = await client.ask("standby.ping", timeout=5)
    assert reply.payload == {"ok": True}
    assert system.status()["standby"]["state"] == ActorState.RUNNING


async def test_stopping_a_system_with_an_actor_on_standby_is_clean(system: ActorSystem) -> None:
    await spawn_instance(system, Standby)
    report = await asyncio.wait_for(system.stop(deadline_s=1.0), 10)
    assert report.clean
    assert system.status()["standby"]["state"] != ActorState.RUNNING
