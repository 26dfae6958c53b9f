"""Supervision: a dead actor is restarted from a fresh instance with growing delays.

The policy is tested with the clock passed in; the running system with the fixture's settings
(``restart_backoff_s`` 0.01, so restarts wait 0.01, 0.02, 0.04 s). Escalation past the restart
intensity is in ``test_escalation.py``."""

from __future__ import annotations

import asyncio
import re

from actors import Actor, ActorState, ActorSystem, on_request
from actors.supervision import RestartIntensity
from actors.system import Supervised
from bus import Envelope, Subscription
from bus.envelope import Payload
from config.actors import ActorSettings
from tests.actors.conftest import ClientFactory
from tests.actors.kit import serially
from tests.bus.waits import eventually, next_matching

RESTARTING = re.compile(r"^restart (\d+) in (\d+\.\d\d)s after (.+)$")

# ---------------------------------------------------------------- the policy, with a fake clock


def intensity(max_restarts: int = 100, window_s: float = 60.0) -> RestartIntensity:
    return RestartIntensity(max_restarts, window_s, backoff_s=0.5, backoff_max_s=30.0)


def test_delays_double_from_the_backoff_up_to_the_cap() -> None:
    policy = intensity()
    delays = [policy.after_failure(now=float(t)) for t in range(9)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    assert policy.recent_failures == 9


def test_more_than_max_restarts_within_the_window_gives_up() -> None:
    policy = intensity(max_restarts=3, window_s=10.0)
    assert [policy.after_failure(now) for now in (0.0, 1.0, 2.0)] == [0.5, 1.0, 2.0]
    assert policy.after_failure(3.0) is None
    assert policy.recent_failures == 4


def test_zero_restarts_allowed_gives_up_at_the_first_failure() -> None:
    assert intensity(max_restarts=0).after_failure(0.0) is None


def test_failures_older_than_the_window_are_forgotten() -> None:
    policy = intensity(max_restarts=3, window_s=10.0)
    assert [policy.after_failure(now) for now in (0.0, 1.0, 2.0)] == [0.5, 1.0, 2.0]
    # 0.0 and 1.0 are more than 10 s before 11.5; 2.0 is not.
    assert policy.after_failure(11.5) == 1.0
    assert policy.recent_failures == 2
    assert policy.after_failure(100.0) == 0.5, "a long quiet spell starts the backoff over"
    assert policy.recent_failures == 1


def test_a_failure_exactly_one_window_old_still_counts() -> None:
    policy = intensity(max_restarts=1, window_s=10.0)
    assert policy.after_failure(0.0) == 0.5
    assert policy.after_failure(10.0) is None
    assert intensity(max_restarts=1, window_s=10.0).after_failure(10.0) == 0.5


def test_from_settings() -> None:
    settings = ActorSettings(
        max_restarts=2, restart_window_s=5.0, restart_backoff_s=0.25, restart_backoff_max_s=0.6
    )
    policy = RestartIntensity.from_settings(settings)
    assert [policy.after_failure(t) for t in (0.0, 0.1, 0.2)] == [0.25, 0.5, None]
    capped = RestartIntensity.from_settings(settings)
    capped.max_restarts = 10
    assert [capped.after_failure(t) for t in (0.0, 0.1, 0.2, 0.3)] == [0.25, 0.5, 0.6, 0.6]


# ---------------------------------------------------------------- restarts in a running system


class Mortal(Actor):
    """Counts asks; ``mortal.die`` makes its run() loop raise."""

    name = "mortal"

    def __init__(self, serial: int) -> None:
        super().__init__()
        self.serial = serial
        self.count = 0
        self._die = asyncio.Event()

    @on_request("mortal.count")
    async def count_one(self, request: Envelope) -> Payload:
        self.count += 1
        return {"count": self.count, "serial": self.serial}

    @on_request("mortal.die")
    async def die(self, request: Envelope) -> Payload:
        self._die.set()
        return {}

    async def run(self) -> None:
        await self._die.wait()
        raise RuntimeError(f"instance {self.serial} died")


class BadStart(Actor):
    """on_start fails for the first ``failing`` instances."""

    name = "badstart"
    failing = 2

    def __init__(self, serial: int) -> None:
        super().__init__()
        self.serial = serial

    async def on_start(self) -> None:
        if self.serial <= self.failing:
            raise OSError(f"cannot open the store (start {self.serial})")

    @on_request("badstart.who")
    async def who(self, request: Envelope) -> Payload:
        return {"serial": self.serial}


async def restart_reasons(liveness: Subscription, actor: str, count: int) -> list[str]:
    """The reasons of the first ``count`` restarts of ``actor``, from its liveness events."""
    reasons: dict[int, str] = {}
    while len(reasons) < count:
        event = await next_matching(
            liveness,
            lambda e: e.payload["actor"] == actor and e.payload["state"] == "restarting",
        )
        reasons[event.payload["restarts"]] = event.payload["reason"]
    return [reasons[n] for n in sorted(reasons)]


def parse_restarts(reasons: list[str]) -> list[tuple[float, str]]:
    """(delay, cause) of each "restart N in D s after CAUSE" reason, in order."""
    parsed = []
    for number, reason in enumerate(reasons, 1):
        match = RESTARTING.match(reason)
        assert match, reason
        assert int(match.group(1)) == number, reasons
        parsed.append((float(match.group(2)), match.group(3)))
    return parsed


async def until_running(supervised: Supervised, restarts: int) -> None:
    await eventually(
        lambda: supervised.restarts == restarts and supervised.state == ActorState.RUNNING,
        f"running again after restart {restarts}",
    )


async def test_a_dead_actor_restarts_from_a_fresh_instance_with_growing_delays(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    client = await make_client("tester")
    liveness = await client.subscribe("actors.liveness")
    supervised = await system.spawn(serially(Mortal))
    for serial in (1, 2, 3, 4):
        assert (await client.ask("mortal.count")).payload == {"count": 1, "serial": serial}
        assert (await client.ask("mortal.count")).payload == {"count": 2, "serial": serial}
        if serial < 4:
            await client.ask("mortal.die")
            await until_running(supervised, serial)
    reasons = await restart_reasons(liveness, "mortal", 3)
    assert parse_restarts(reasons) == [
        (0.01, "RuntimeError: instance 1 died"),
        (0.02, "RuntimeError: instance 2 died"),
        (0.04, "RuntimeError: instance 3 died"),
    ], "a fresh delay each time, doubling"
    assert supervised.reason == "", "a running actor carries no reason"


async def test_an_actor_whose_on_start_raises_is_restarted(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    client = await make_client("tester")
    liveness = await client.subscribe("actors.liveness")
    supervised = await system.spawn(serially(BadStart))
    await until_running(supervised, 2)
    assert (await client.ask("badstart.who")).payload == {"serial": 3}
    reasons = await restart_reasons(liveness, "badstart", 2)
    assert parse_restarts(reasons) == [
        (0.01, "OSError: cannot open the store (start 1)"),
        (0.02, "OSError: cannot open the store (start 2)"),
    ]
