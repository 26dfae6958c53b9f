"""Health tells the truth about leadership, with real processes: while a scheduler is connected
but cannot lead (another holder keeps the lease), health turns critical once the lease TTL has
passed, naming the reason, and healthy again once a scheduler leads.
"""

from __future__ import annotations

from typing import Any

import pytest

from bus import BusClient, KeysDirectory
from config import load_settings
from taskbus.client import TaskbusClient
from tests.e2e.system import actor, environment, sigkill, terminate, until, up

pytestmark = pytest.mark.timeout(180)
ROGUE = "scheduler-rogue"  # an identity in the scheduler role, holding the lease elsewhere


async def test_health_is_critical_while_no_scheduler_leads_and_healthy_once_one_does(
    tmp_path: Any,
) -> None:
    env = environment(tmp_path / "home", TASKBUS_ACTORS__LIVENESS_INTERVAL_S="0.3")
    keys = KeysDirectory(tmp_path / "home" / "keys")
    keys.identity_keypair(ROGUE, create=True)
    system = await up({**env, "TASKBUS_ENABLED": "false"})
    scheduler = await actor(env, "scheduler")
    settings = load_settings(environ=env)
    rogue = BusClient(
        env["TASKBUS_ENDPOINT"],
        identity=ROGUE,
        keypair=keys.identity_keypair(ROGUE),
        server_key=keys.broker_public_key(),
        settings=settings.bus,
    )
    await rogue.start(timeout=10)
    async with TaskbusClient.connect(settings, responder_wait_s=30) as admin:
        await admin.stats(wait_s=30)

        async def status() -> str:
            return str((await admin.health())["status"])

        await until(lambda: _is(status, "healthy"), "healthy while the scheduler leads")
        await sigkill(scheduler)

        async def taken() -> bool:  # once the dead leader's lease expired
            reply = await rogue.ask(
                "store.lease.acquire", {"name": "scheduler", "ttl_s": 3600.0}, timeout=10
            )
            return bool(reply.payload["granted"])

        await until(taken, "the rogue holds the lease")
        standby = await actor(env, "scheduler")  # connected, waiting for the lease

        async def leaderless() -> bool:
            report = await admin.health()
            reasons = report["actors"].get("scheduling", {}).get("reasons", [])
            return report["status"] == "critical" and any(
                r.startswith("no scheduler has led for") for r in reasons
            )

        await until(leaderless, "critical: no scheduler leads", state=admin.health)
        scheduler_entry = (await admin.health())["actors"]["scheduler"]
        assert scheduler_entry["state"] == "standby"
        lease = await rogue.ask(
            "store.lease.acquire", {"name": "scheduler", "ttl_s": 3600.0}, timeout=10
        )
        token = lease.payload["lease"]["token"]
        await rogue.ask("store.lease.release", {"name": "scheduler", "token": token}, timeout=10)
        await until(lambda: _is(status, "healthy"), "healthy once it leads", state=admin.health)
    await rogue.stop()
    await terminate(standby)
    await terminate(system)


async def _is(status: Any, expected: str) -> bool:
    return bool(await status() == expected)
