"""Restart intensity escalation: past max_restarts within the window an actor stays down as
FAILED, health turns critical naming it and its last error, and the other actors keep working."""

from __future__ import annotations

import pytest

from actors import Actor, ActorState, ActorSystem, HealthActor, on_request
from bus import Envelope
from bus.envelope import Payload
from config.actors import ActorSettings
from tests.actors.conftest import ClientFactory
from tests.actors.kit import serially
from tests.bus.waits import eventually, next_matching


class Echo(Actor):
    name = "echo"

    @on_request("echo")
    async def echo(self, request: Envelope) -> Payload:
        return dict(request.payload)


class Doomed(Actor):
    name = "doomed"

    def __init__(self, serial: int) -> None:
        super().__init__()
        self.serial = serial

    async def run(self) -> None:
        raise RuntimeError(f"boom {self.serial}")


@pytest.fixture
def actor_settings() -> ActorSettings:
    """Gives up after the third failure within a minute."""
    return ActorSettings(
        max_restarts=2,
        restart_window_s=60.0,
        restart_backoff_s=0.01,
        shutdown_deadline_s=2.0,
        liveness_interval_s=1.0,
    )


async def test_restart_intensity_escalates_to_failed_and_critical_health(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    client = await make_client("tester")
    announcements = await client.subscribe("scheduler.health")
    await system.spawn(lambda: HealthActor(publish_interval_s=60.0))
    await system.spawn(Echo)
    doomed = await system.spawn(serially(Doomed))
    await eventually(lambda: doomed.state == ActorState.FAILED, "the doomed actor given up")
    assert doomed.restarts == 2
    expected = "gave up after 3 failures within 60.0s; last: RuntimeError: boom 3"
    assert doomed.reason == expected

    async def critical() -> bool:
        return bool((await client.ask("scheduler.health")).payload["status"] == "critical")

    await eventually(critical, "health critical")
    health = (await client.ask("scheduler.health")).payload
    assert health["actors"]["doomed"]["status"] == "critical"
    assert health["actors"]["doomed"]["reasons"] == [f"failed: {expected}"]
    assert health["actors"]["doomed"]["state"] == "failed"
    assert health["actors"]["echo"]["status"] == "healthy"
    announced = await next_matching(announcements, lambda e: e.payload["status"] == "critical")
    assert announced.payload["actors"]["doomed"]["reasons"] == [f"failed: {expected}"]

    assert (await client.ask("echo", {"still": "here"})).payload == {"still": "here"}
    assert system.status()["echo"]["state"] == "running"
    assert system.status()["doomed"]["state"] == "failed"
