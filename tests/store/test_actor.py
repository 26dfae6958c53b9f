"""The store actor on a real embedded actor system: every ``store.*`` request answered over the
bus, bad payloads refused with ``invalid`` naming the field, store errors mapped to codes, time
from the actor's clock, and a store that cannot open reported without a traceback.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorState, ActorSystem
from actors.store import LibsqlStore, MasterKey, StoreActor
from bus import BusClient, RemoteError
from config.actors import ActorSettings
from tests.actors.kit import spawn_instance
from tests.bus.waits import eventually
from tests.store.conftest import T0, at, file_hashes

INJECTION = "x'); DROP TABLE t;--"
FOREIGN = b"not a database at all " * 500
FOREIGN_HASH = hashlib.sha256(FOREIGN).hexdigest()


def write_foreign_file(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(FOREIGN)


@dataclass
class FakeClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Served:
    client: BusClient
    actor: StoreActor
    clock: FakeClock

    async def ask(self, topic: str, **payload: Any) -> dict[str, Any]:
        reply = await self.client.ask(topic, payload, timeout=10)
        return dict(reply.payload)

    async def refused(self, topic: str, **payload: Any) -> RemoteError:
        with pytest.raises(RemoteError) as caught:
            await self.client.ask(topic, payload, timeout=10)
        return caught.value


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    settings = ActorSettings(
        max_restarts=1, restart_backoff_s=0.01, shutdown_deadline_s=2.0, liveness_interval_s=1.0
    )
    system = await ActorSystem.embedded(settings=settings, name="storetest")
    yield system
    await asyncio.wait_for(system.stop(deadline_s=2.0), 10)


async def serve(system: ActorSystem, db_path: Path, max_reply_bytes: int = 512 * 1024) -> Served:
    clock = FakeClock()
    actor = await spawn_instance(
        system,
        lambda: StoreActor(
            LibsqlStore(db_path, environ={}), clock=clock, max_reply_bytes=max_reply_bytes
        ),
    )
    return Served(await system.client("tester"), actor, clock)


@pytest.fixture
async def served(system: ActorSystem, db_path: Path) -> Served:
    return await serve(system, db_path)


async def test_tasks_are_put_read_listed_and_deleted_over_the_bus(served: Served) -> None:
    put = await served.ask(
        "store.task.put",
        task_id=INJECTION,
        task_class="tasks.Report",
        schedule="0 3 * * *",
        config={"days": 30},
        next_run="2024-05-02T03:00:00+02:00",
    )
    assert put["duplicate"] is False
    task = put["task"]
    assert (task["task_id"], task["config"], task["version"]) == (INJECTION, {"days": 30}, 1)
    assert task["next_run"] == "2024-05-02T01:00:00+00:00"
    assert task["created_at"] == T0.isoformat()  # the actor's clock, not the requester's

    assert (await served.ask("store.task.get", task_id=INJECTION))["task"] == task
    listed = await served.ask("store.task.list", limit=10)
    assert ([t["task_id"] for t in listed["tasks"]], listed["next_cursor"]) == ([INJECTION], None)
    served.clock.advance(60)
    marked = await served.ask(
        "store.task.mark_run", task_id=INJECTION, last_run="2024-05-01T12:00:00Z"
    )
    assert (marked["task"]["last_run"], marked["task"]["updated_at"]) == (
        T0.isoformat(),
        at(60).isoformat(),
    )
    status = (await served.ask("store.task.status", task_id=INJECTION))["status"]
    assert (status["runs"], status["last_run"], status["next_run"]) == (0, T0.isoformat(), None)
    assert await served.ask("store.task.delete", task_id=INJECTION) == {"deleted": True}
    refusal = await served.refused("store.task.get", task_id=INJECTION)
    assert (refusal.code, refusal.reason) == ("not_found", f"task {INJECTION!r} not found")


async def test_a_fire_is_recorded_once_and_finished_over_the_bus(served: Served) -> None:
    fire = {"task_id": "t.bus", "scheduled_at": at(0).isoformat(), "started_at": at(1).isoformat()}
    first = await served.ask("store.execution.record", **fire)
    again = await served.ask("store.execution.record", **fire)
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["execution"] == first["execution"]
    execution_id = first["execution"]["execution_id"]
    finished = await served.ask(
        "store.execution.finish",
        execution_id=execution_id,
        completed_at=at(3).isoformat(),
        success=False,
        error_message="boom",
        result={"partial": True},
        retry_count=1,
    )
    run = finished["execution"]
    assert (run["success"], run["duration_seconds"], run["error_message"], run["result"]) == (
        False,
        2.0,
        "boom",
        {"partial": True},
    )
    got = await served.ask("store.execution.get", execution_id=execution_id)
    assert got["execution"] == run
    history = await served.ask("store.execution.history", task_id="t.bus")
    assert ([e["execution_id"] for e in history["executions"]], history["next_cursor"]) == (
        [execution_id],
        None,
    )
    stats = await served.ask("store.stats")
    assert (stats["overall"]["runs"], stats["overall"]["failure_rate"]) == (1, 1.0)
    assert [s["task_id"] for s in stats["tasks"]] == ["t.bus"]
    assert stats["since"] is None


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [
        ("store.task.get", {}, "task_id: is required"),
        ("store.task.get", {"task_id": 5}, "task_id: expected a string, got int"),
        ("store.task.get", {"task_id": "a", "taks": 1}, "taks: is not a field of this request"),
        (
            "store.task.put",
            {"task_id": "a", "task_class": "C", "schedule": "@daily", "enabled": "yes"},
            "enabled: expected true or false, got str",
        ),
        (
            "store.task.put",
            {"task_id": "a", "task_class": "C", "schedule": "@daily", "config": [1]},
            "config: expected a map, got list",
        ),
        (
            "store.execution.record",
            {"task_id": "a", "scheduled_at": "yesterday", "started_at": "2024-05-01T00:00:00Z"},
            "scheduled_at: 'yesterday' is not an ISO 8601 date and time",
        ),
        (
            "store.execution.record",
            {"task_id": "a", "scheduled_at": "2024-05-01T00:00:00", "started_at": "x"},
            "scheduled_at: '2024-05-01T00:00:00' has no UTC offset (add +00:00 or Z)",
        ),
        (
            "store.execution.record",
            {
                "task_id": "a",
                "scheduled_at": "2024-05-01T00:00:00Z",
                "started_at": "2024-05-01T00:00:00Z",
                "success": True,
            },
            "success: needs completed_at",
        ),
        (
            "store.execution.record",
            {
                "task_id": "a",
                "scheduled_at": "2024-05-01T00:00:00Z",
                "started_at": "2024-05-01T00:00:00Z",
                "fence": {"lease": "scheduler", "token": 0},
            },
            "fence.token: 0 is outside 1..9223372036854775807",
        ),
        ("store.execution.history", {"task_id": "a", "limit": 5000}, "limit: 5000 is outside"),
        ("store.execution.history", {"task_id": "a", "before": "zz"}, "cursor: is not a cursor"),
        ("store.lease.acquire", {"name": "scheduler", "ttl_s": -1}, "ttl_s: -1 is outside"),
        ("store.stats", {"since": 17}, "since: expected ISO 8601 text, got int"),
    ],
)
async def test_a_bad_request_is_refused_as_invalid_naming_the_field(
    served: Served, topic: str, payload: dict[str, Any], reason: str
) -> None:
    refusal = await served.refused(topic, **payload)
    assert refusal.code == "invalid"
    assert refusal.reason.startswith(reason)
    assert (await served.ask("store.task.list"))["tasks"] == []  # nothing was written


async def test_an_unknown_store_topic_is_refused(served: Served) -> None:
    refusal = await served.refused("store.task.destroy", task_id="a")
    assert (refusal.code, refusal.reason) == (
        "unknown_topic",
        "the store does not answer 'store.task.destroy'",
    )


async def test_a_stale_version_is_a_conflict(served: Served) -> None:
    task = {"task_id": "a.b", "task_class": "C", "schedule": "@daily"}
    await served.ask("store.task.put", **task)
    refusal = await served.refused("store.task.put", **task, expected_version=0)
    assert refusal.code == "conflict"


async def test_the_lease_is_held_by_the_requester_and_expires_by_the_actor_s_clock(
    served: Served, system: ActorSystem
) -> None:
    mine = await served.ask("store.lease.acquire", name="scheduler", ttl_s=30)
    assert mine["granted"] is True
    assert (mine["lease"]["holder"], mine["lease"]["token"]) == ("tester", 1)
    other = await system.client("rival")
    denied = await other.ask("store.lease.acquire", {"name": "scheduler", "ttl_s": 30}, timeout=10)
    assert denied.payload["granted"] is False
    assert denied.payload["lease"]["holder"] == "tester"

    served.clock.advance(30)
    taken = await other.ask("store.lease.acquire", {"name": "scheduler", "ttl_s": 30}, timeout=10)
    assert (taken.payload["granted"], taken.payload["lease"]["token"]) == (True, 2)
    refusal = await served.refused("store.lease.renew", name="scheduler", token=1, ttl_s=30)
    assert refusal.code == "lease_lost"
    fenced = await served.refused(
        "store.execution.record",
        task_id="t.late",
        scheduled_at=at(0).isoformat(),
        started_at=at(0).isoformat(),
        fence={"lease": "scheduler", "token": 1},
    )
    assert fenced.code == "lease_lost"
    released = await other.ask("store.lease.release", {"name": "scheduler", "token": 2}, timeout=10)
    assert released.payload == {"released": True}


async def test_dead_letters_and_retention_over_the_bus(served: Served) -> None:
    letter = {
        "task_id": "t.dead",
        "scheduled_at": at(0).isoformat(),
        "attempts": 4,
        "error_type": "TimeoutError",
        "last_error": "timed out",
        "reason": "exhausted after 4 attempts",
        "failed_at": at(5).isoformat(),
    }
    assert (await served.ask("store.dead_letter.add", **letter))["duplicate"] is False
    assert (await served.ask("store.dead_letter.add", **letter))["duplicate"] is True
    listed = await served.ask("store.dead_letters", task_id="t.dead")
    assert [d["last_error"] for d in listed["dead_letters"]] == ["timed out"]

    served.clock.advance(31 * 86_400)
    report = await served.ask("store.retention.run", retention_days=30)
    assert report["dead_letters_expired"] == 1
    assert report["cutoff"] == at(86_400).isoformat()


async def test_a_page_too_large_for_one_reply_is_cut_and_continues(
    system: ActorSystem, db_path: Path
) -> None:
    served = await serve(system, db_path, max_reply_bytes=4_000)
    for n in range(20):
        await served.ask(
            "store.execution.record",
            task_id="t.big",
            scheduled_at=at(n).isoformat(),
            started_at=at(n).isoformat(),
            completed_at=at(n + 1).isoformat(),
            success=True,
            result={"blob": "x" * 900},
        )
    seen: list[str] = []
    cursor = None
    replies = 0
    while True:
        reply = await served.ask("store.execution.history", task_id="t.big", before=cursor)
        replies += 1
        assert 1 <= len(reply["executions"]) < 20
        seen.extend(e["scheduled_at"] for e in reply["executions"])
        if (cursor := reply["next_cursor"]) is None:
            break
    assert seen == [at(n).isoformat() for n in reversed(range(20))]
    assert replies >= 5


async def test_maintenance_checks_integrity_and_rotates_the_key(
    served: Served, data_dir: Path
) -> None:
    await served.ask("store.task.put", task_id="a.b", task_class="C", schedule="@daily")
    assert await served.ask("store.maintenance.integrity_check") == {"ok": True, "problems": []}
    before = (data_dir / "master.key").read_bytes()
    report = await served.ask("store.maintenance.rekey")
    assert report["backup_key_file"] == report["backup"] + ".key"
    assert (data_dir / "master.key").read_bytes() != before
    assert (await served.ask("store.task.get", task_id="a.b"))["task"]["task_id"] == "a.b"
    refusal = await served.refused("store.maintenance.rekey", backup="/etc/passwd")
    assert (refusal.code, refusal.reason) == ("invalid", "backup: is not a field of this request")


async def test_a_store_that_cannot_open_fails_the_actor_with_a_clear_reason(
    system: ActorSystem, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_foreign_file(db_path)
    caplog.set_level(logging.INFO)
    supervised = await system.spawn(
        lambda: StoreActor(LibsqlStore(db_path, master_key=MasterKey.generate(), environ={}))
    )
    await eventually(lambda: supervised.state == ActorState.FAILED, "the store actor given up")
    assert supervised.reason.endswith(
        f"last: WrongKey: cannot open store {db_path}: wrong key or not a taskbus database"
    )
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []  # no traceback logged
    assert file_hashes(db_path.parent) == {"taskbus.db": FOREIGN_HASH}
