"""Least privilege and ownership against a real ``taskbus up`` (CURVE over tcp, the shipped default
ACL, a real encrypted store), attacked the way a second admitted identity would: every internal
topic refused ``denied`` and every other owner's task refused, with the store unchanged (compared
before and after, as an admin reads it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bus import BusClient, KeysDirectory, RemoteError
from config import load_settings
from config.settings import Settings
from taskbus import Refused, TaskbusClient
from tests.e2e.procs import free_port, running_up

pytestmark = pytest.mark.timeout(180)

ATTACKER = "mallory"  # admitted, in no role: any client program's identity
OWNERS = ("alice", "bob")
TICK = "tasks.reminders:Reminder"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("privilege") / "home"
    keys = KeysDirectory(home / "keys")
    keys.broker_keypair(create=True)
    for identity in (ATTACKER, *OWNERS):
        keys.identity_keypair(identity, create=True)  # as `taskbus keys init --identity` does
    environment = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
    }
    with running_up(environment):
        yield environment


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(environ=env)


@asynccontextmanager
async def raw(settings: Settings, identity: str) -> AsyncIterator[BusClient]:
    """A bare bus client as ``identity``, over tcp+CURVE with its own key."""
    keys = KeysDirectory(settings.paths.keys_dir)
    client = BusClient(
        settings.endpoints[0],
        identity=identity,
        keypair=keys.identity_keypair(identity),
        server_key=keys.broker_public_key(),
        settings=settings.bus,
    )
    await client.start(timeout=10)
    try:
        yield client
    finally:
        await client.stop()


async def snapshot(admin: TaskbusClient) -> dict[str, Any]:
    """What the attacks must not change: every task's definition, the user tasks' histories and
    missed runs, the dead letters and who holds the lease with which token."""
    tasks = await admin.tasks()
    state = ("last_run", "next_run", "updated_at", "accounted_through")
    stats = await admin.stats()
    return {
        "tasks": {t["task_id"]: {k: v for k, v in t.items() if k not in state} for t in tasks},
        "history": {
            t["task_id"]: await admin.history(t["task_id"], limit=1000)
            for t in tasks
            if t["task_id"].startswith("user.")
        },
        "missed": {
            t["task_id"]: await admin.missed(t["task_id"], limit=1000)
            for t in tasks
            if t["task_id"].startswith("user.")
        },
        "dead": (await admin.ask("store.dead_letters", {"limit": 1000}))["dead_letters"],
        "lease": (stats["leader"], stats["lease_token"]),
    }


async def denied(attempt: Any) -> RemoteError:
    with pytest.raises(RemoteError) as refused:
        await attempt
    assert refused.value.code == "denied", refused.value
    return refused.value


async def test_a_second_identity_is_refused_every_internal_topic_and_nothing_changes(
    settings: Settings,
) -> None:
    async with TaskbusClient.connect(settings, responder_wait_s=30) as admin:
        await admin.stats(wait_s=30)
        async with TaskbusClient.connect(settings, identity="alice") as alice:
            await alice.create("user.alice_report", TICK, "0 3 * * *")
        before = await snapshot(admin)
        async with raw(settings, ATTACKER) as mallory:
            fence = {"lease": "scheduler", "token": before["lease"][1]}
            for topic, payload in (
                ("store.task.delete", {"task_id": "maintenance.health_check"}),
                ("store.task.put", {"task_id": "security.key_rotation", "task_class": "x:Y",
                                    "schedule": "@daily", "enabled": False}),
                ("store.retention.run", {"retention_days": 0}),
                ("store.execution.record", {"task_id": "user.alice_report",
                                            "scheduled_at": "2026-01-01T00:00:00+00:00",
                                            "started_at": "2026-01-01T00:00:00+00:00",
                                            "completed_at": "2026-01-01T00:00:01+00:00",
                                            "success": True}),
                ("store.lease.acquire", {"name": "scheduler", "ttl_s": 3600}),
                ("store.lease.release", {"name": "scheduler", "holder": before["lease"][0],
                                         "token": fence["token"]}),
                ("store.execution.history", {"task_id": "user.alice_report"}),
                ("store.maintenance.rekey", {}),
                ("scheduler.stats", {}),
                ("bus.peers", {}),
            ):  # fmt: skip
                refusal = await denied(mallory.ask(topic, payload, timeout=10))
                assert f"'mallory' may not ask '{topic}'" in refusal.reason
            for queue in ("scheduler.task.dispatch.user", "scheduler.task.result"):
                forged = {"execution_id": "0" * 32, "task_id": "user.alice_report"}
                await denied(mallory.enqueue(queue, forged, timeout=10))
                await denied(mallory.consume(queue, credit=1))
            for prefix in ("scheduler.task.create", "scheduler.", "store.", "scheduler.health"):
                await denied(mallory.serve(prefix))
            await denied(mallory.subscribe("bus.error"))
            await denied(mallory.subscribe("actors.liveness"))
            for topic in ("actors.liveness", "scheduler.health", "scheduler.task.status.alice"):
                await mallory.publish(topic, {"identity": "scheduler", "state": "running"})
                assert (await mallory.errors.get(timeout=10)).code == "denied"
        assert await snapshot(admin) == before


async def test_an_owner_s_task_is_refused_to_every_other_identity(settings: Settings) -> None:
    async with TaskbusClient.connect(settings, responder_wait_s=30) as admin:
        await admin.stats(wait_s=30)
        async with (
            TaskbusClient.connect(settings, identity="alice") as alice,
            TaskbusClient.connect(settings, identity="bob") as bob,
        ):
            await alice.create("user.private_plan", TICK, "0 4 * * *", config={"message": "mine"})
            await bob.create("user.bob_own", TICK, "0 5 * * *")
            before = await snapshot(admin)
            for name, call in (
                ("update", bob.update("user.private_plan", schedule="@hourly")),
                ("delete", bob.delete("user.private_plan")),
                ("enable", bob.enable("user.private_plan")),
                ("disable", bob.disable("user.private_plan")),
                ("trigger", bob.trigger("user.private_plan")),
                ("reset", bob.reset("user.private_plan")),
                ("read", bob.get("user.private_plan")),
                ("read", bob.status("user.private_plan")),
                ("read", bob.history("user.private_plan")),
                ("read", bob.missed("user.private_plan")),
                ("disable", bob.disable("maintenance.health_check")),  # taskbus's own
            ):
                with pytest.raises(Refused) as refused:
                    await call
                assert refused.value.code == "denied"
                assert f"'bob' may not {name} task" in refused.value.reason
                assert "alice" not in refused.value.reason  # the owner is not told
            assert [t["task_id"] for t in await bob.tasks()] == ["user.bob_own"]
            mine = [t["task_id"] for t in await alice.tasks()]
            assert "user.private_plan" in mine
            assert set(mine) <= {"user.private_plan", "user.alice_report", "user.alice_secret"}
            assert await snapshot(admin) == before
            # the owner and the admin may
            assert (await alice.get("user.private_plan"))["config"] == {"message": "mine"}
            assert (await admin.disable("user.private_plan"))["enabled"] is False
            # a run is its task's: the owner reads it over the default ACL, another is refused
            run_id = await alice.trigger("user.private_plan")
            assert (await alice.run(run_id))["run"]["task_id"] == "user.private_plan"
            with pytest.raises(Refused) as refused:
                await bob.run(run_id)
            assert refused.value.code == "denied"
            assert "'bob' may not read task 'user.private_plan'" in refused.value.reason


async def test_a_task_s_events_reach_its_owner_and_the_admins_only(settings: Settings) -> None:
    async with TaskbusClient.connect(settings, responder_wait_s=30) as admin:
        await admin.stats(wait_s=30)
        async with (
            TaskbusClient.connect(settings, identity="alice") as alice,
            TaskbusClient.connect(settings, identity="bob") as bob,
        ):
            everything = await admin.watch("scheduler.task.status")
            bobs = await bob.watch()  # the default prefixes are allowed to everyone
            alices = await alice.watch("scheduler.task.status")
            await alice.create("user.alice_secret", TICK, "0 6 * * *")
            seen = await everything.get(timeout=10)
            assert (seen.topic, seen.payload["task_id"]) == (
                "scheduler.task.status.alice",
                "user.alice_secret",
            )
            assert (await alices.get(timeout=10)).payload["task_id"] == "user.alice_secret"
            await bob.create("user.bob_marker", TICK, "0 7 * * *")  # published after alice's
            first = await asyncio.wait_for(bobs.get(), 10)
            assert (first.topic, first.payload["task_id"]) == (
                "scheduler.task.status.bob",
                "user.bob_marker",
            )


def test_the_attacker_s_keys_are_admitted(env: dict[str, str]) -> None:
    """The attacks above are refused by the ACL, not by admission: the key is allow-listed."""
    allowed = KeysDirectory(Path(env["TASKBUS_HOME"]) / "keys").allowed()
    assert ATTACKER in allowed.values()
