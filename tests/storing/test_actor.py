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
from actors.storing import StoreActor
from bus import BusClient
from config import BusSettings
from config.actors import ActorSettings
from store import LibsqlStore, MasterKey, values
from tests.actors.kit import spawn_instance
from tests.asking import Asking
from tests.bus.waits import eventually
from tests.conftest import OPEN_ACL
from tests.store.conftest import T0, at, file_hashes

INJECTION = "x'); DROP TABLE t;--"
MISSED = {
    "first_at": "2024-05-01T00:00:00Z",
    "last_at": "2024-05-01T00:00:00Z",
    "count": 1,
    "reason": "down",
}
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
class Served(Asking):
    client: BusClient
    actor: StoreActor
    clock: FakeClock


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    settings = ActorSettings(
        max_restarts=1, restart_backoff_s=0.01, shutdown_deadline_s=2.0, liveness_interval_s=1.0
    )
    system = await ActorSystem.embedded(
        settings=settings, bus_settings=BusSettings(acl=OPEN_ACL), name="storetest"
    )
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
    overall_only = await served.ask("store.stats", per_task=False)
    assert "tasks" not in overall_only
    assert overall_only["overall"] == stats["overall"]


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
        (
            "store.task.put",
            {"task_id": "a", "task_class": "C", "schedule": "@daily", "run_policy": "strict"},
            "run_policy: expected a map, got str",
        ),
        ("store.task.reset", {}, "task_id: is required"),
        ("store.task.reset", {"task_id": "a", "now": "2024-05-01T00:00:00Z"}, "now: is not a"),
        (
            "store.execution.record",
            {
                "task_id": "a",
                "scheduled_at": "2024-05-01T00:00:00Z",
                "started_at": "2024-05-01T00:00:00Z",
                "retry_count": -1,
            },
            "retry_count: -1 is outside 0..",
        ),
        (
            "store.execution.record",
            {
                "task_id": "a",
                "scheduled_at": "2024-05-01T00:00:00Z",
                "started_at": "2024-05-01T00:00:00Z",
                "retry_count": 1_000_001,
            },
            "retry_count: 1000001 is outside 0..1000000",
        ),
        ("store.execution.unsettled", {"since": "now"}, "since: 'now' is not an ISO 8601"),
        ("store.execution.unsettled", {"limit": 0}, "limit: 0 is outside 1.."),
        ("store.execution.unsettled", {"after": 7}, "after: expected a string, got int"),
        ("store.execution.unsettled", {"before": "x"}, "before: is not a field of this request"),
        ("store.missed.record", {"task_id": "a"}, "runs: is required"),
        ("store.missed.record", {"task_id": "a", "runs": {}}, "runs: expected a list, got dict"),
        ("store.missed.record", {"task_id": "a", "runs": []}, "runs: has 0 entries, expected 1.."),
        (
            "store.missed.record",
            {"task_id": "a", "runs": [{"first_at": "2024-05-01T00:00:00Z"}] * 1001},
            "runs: has 1001 entries, expected 1..1000",
        ),
        ("store.missed.record", {"task_id": "a", "runs": [5]}, "runs[0]: expected a map, got int"),
        (
            "store.missed.record",
            {"task_id": "a", "runs": [MISSED, {**MISSED, "last_at": "2024-04-30T23:59:59Z"}]},
            "runs[1].last_at: is before first_at",
        ),
        (
            "store.missed.record",
            {"task_id": "a", "runs": [{k: v for k, v in MISSED.items() if k != "count"}]},
            "runs[0].count: is required",
        ),
        (
            "store.missed.record",
            {"task_id": "a", "runs": [{**MISSED, "count": 0}]},
            "runs[0].count: 0 is outside 1..",
        ),
        (
            "store.missed.record",
            {"task_id": "a", "runs": [{**MISSED, "reason": ""}]},
            "runs[0].reason: must not be empty",
        ),
        (
            "store.missed.record",
            {"task_id": "a", "runs": [{**MISSED, "why": "x"}]},
            "runs[0].why: is not a field of this request",
        ),
        (
            "store.missed.record",
            {"task_id": "a", "runs": [MISSED], "fence": {"lease": "scheduler"}},
            "fence.token: is required",
        ),
        ("store.missed.list", {}, "task_id: is required"),
        ("store.missed.list", {"task_id": "a", "limit": 1001}, "limit: 1001 is outside 1..1000"),
        ("store.missed.list", {"task_id": "a", "before": "zz"}, "cursor: is not a cursor"),
    ],
)
async def test_a_bad_request_is_refused_as_invalid_naming_the_field(
    served: Served, topic: str, payload: dict[str, Any], reason: str
) -> None:
    refusal = await served.refused(topic, **payload)
    assert refusal.code == "invalid"
    assert refusal.reason.startswith(reason)
    assert (await served.ask("store.task.list"))["tasks"] == []  # nothing was written
    assert (await served.ask("store.missed.list", task_id="a"))["missed"] == []
    assert (await served.ask("store.execution.history", task_id="a"))["executions"] == []


async def test_a_run_policy_and_a_reset_over_the_bus(served: Served) -> None:
    task = {"task_id": "t.run", "task_class": "C", "schedule": "@hourly"}
    policy = {"dst": {"gap": "shift"}, "jitter_s": 5, "timeout_s": 60.0}
    put = await served.ask("store.task.put", **task, run_policy=policy)
    assert (put["task"]["run_policy"], put["task"]["version"]) == (policy, 1)
    assert (await served.ask("store.task.put", **task, run_policy=policy))["duplicate"] is True
    plain = await served.ask("store.task.put", **task)
    assert (plain["duplicate"], plain["task"]["run_policy"]) == (False, None)

    await served.ask(
        "store.task.mark_run",
        task_id="t.run",
        last_run=at(0).isoformat(),
        next_run=at(3600).isoformat(),
    )
    served.clock.advance(90)
    reset = (await served.ask("store.task.reset", task_id="t.run"))["task"]
    assert (reset["last_run"], reset["next_run"], reset["version"], reset["updated_at"]) == (
        None,
        None,
        2,
        at(90).isoformat(),
    )
    assert (await served.ask("store.task.get", task_id="t.run"))["task"] == reset
    refusal = await served.refused("store.task.reset", task_id="t.none")
    assert (refusal.code, refusal.reason) == ("not_found", "task 't.none' not found")


async def test_attempts_and_unsettled_executions_over_the_bus(served: Served) -> None:
    fire = {"task_id": "t.retry", "scheduled_at": at(0).isoformat()}
    first = await served.ask(
        "store.execution.record",
        **fire,
        started_at=at(0).isoformat(),
        completed_at=at(1).isoformat(),
        success=False,
        error_message="boom",
    )
    assert first["execution"]["retry_count"] == 0
    unsettled = await served.ask("store.execution.unsettled")
    assert [e["execution_id"] for e in unsettled["executions"]] == [
        first["execution"]["execution_id"]
    ]
    retry = await served.ask(
        "store.execution.record", **fire, started_at=at(10).isoformat(), retry_count=1
    )
    run = retry["execution"]
    assert (retry["duplicate"], run["retry_count"], run["idempotency_key"]) == (
        False,
        1,
        f"t.retry@{values.to_us(at(0))}#1",
    )
    again = await served.ask(
        "store.execution.record", **fire, started_at=at(11).isoformat(), retry_count=1
    )
    assert (again["duplicate"], again["execution"]) == (True, run)
    unsettled = await served.ask("store.execution.unsettled", since=at(0).isoformat(), limit=10)
    assert ([e["execution_id"] for e in unsettled["executions"]], unsettled["next_cursor"]) == (
        [run["execution_id"]],
        None,
    )
    assert (await served.ask("store.execution.unsettled", since=at(1).isoformat())) == {
        "executions": [],
        "next_cursor": None,
    }
    finished = await served.ask(
        "store.execution.finish",
        execution_id=run["execution_id"],
        completed_at=at(12).isoformat(),
        success=True,
    )
    assert finished["execution"]["retry_count"] == 1  # kept: the finish gave none
    told = await served.ask(
        "store.execution.record",
        **fire,
        started_at=at(20).isoformat(),
        completed_at=at(21).isoformat(),
        success=True,
        retry_count=2,
    )
    assert (told["execution"]["retry_count"], told["execution"]["idempotency_key"]) == (
        2,
        f"t.retry@{values.to_us(at(0))}#2",
    )
    assert (await served.ask("store.execution.unsettled"))["executions"] == []

    # paging: three running fires, one per page
    ids = []
    for n in range(3):
        recorded = await served.ask(
            "store.execution.record",
            task_id="t.page",
            scheduled_at=at(n).isoformat(),
            started_at=at(n).isoformat(),
        )
        ids.append(recorded["execution"]["execution_id"])
    seen: list[str] = []
    cursor = None
    while True:
        page = await served.ask("store.execution.unsettled", after=cursor, limit=1)
        seen.extend(e["execution_id"] for e in page["executions"])
        if (cursor := page["next_cursor"]) is None:
            break
    assert seen == ids


async def test_missed_runs_over_the_bus(served: Served) -> None:
    runs = [
        {**MISSED, "first_at": at(n * 60).isoformat(), "last_at": at(n * 60).isoformat()}
        for n in range(5)
    ]
    recorded = await served.ask("store.missed.record", task_id="t.missed", runs=runs)
    assert recorded == {"recorded": 5}
    again = await served.ask("store.missed.record", task_id="t.missed", runs=runs[3:])
    assert again == {"recorded": 0}
    first = await served.ask("store.missed.list", task_id="t.missed", limit=3)
    assert [m["first_at"] for m in first["missed"]] == [at(n * 60).isoformat() for n in (4, 3, 2)]
    assert set(first["missed"][0]) == {
        "missed_id",
        "task_id",
        "first_at",
        "last_at",
        "count",
        "reason",
        "recorded_at",
    }
    assert first["missed"][0]["recorded_at"] == T0.isoformat()  # the actor's clock
    rest = await served.ask("store.missed.list", task_id="t.missed", before=first["next_cursor"])
    assert ([m["first_at"] for m in rest["missed"]], rest["next_cursor"]) == (
        [at(60).isoformat(), at(0).isoformat()],
        None,
    )

    lease = await served.ask("store.lease.acquire", name="scheduler", ttl_s=30)
    fence = {"lease": "scheduler", "token": lease["lease"]["token"]}
    ranged = {"first_at": at(600).isoformat(), "last_at": at(900).isoformat(), "count": 6}
    fenced = await served.ask(
        "store.missed.record",
        task_id="t.missed",
        runs=[{**ranged, "reason": "misfire"}],
        fence=fence,
    )
    assert fenced == {"recorded": 1}
    stale = await served.refused(
        "store.missed.record",
        task_id="t.missed",
        runs=[{**MISSED, "first_at": at(1200).isoformat(), "last_at": at(1200).isoformat()}],
        fence={"lease": "scheduler", "token": 9},
    )
    assert stale.code == "lease_lost"
    (latest, *_) = (await served.ask("store.missed.list", task_id="t.missed"))["missed"]
    assert (latest["first_at"], latest["last_at"], latest["count"], latest["reason"]) == (
        at(600).isoformat(),
        at(900).isoformat(),
        6,
        "misfire",
    )


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
    assert "token" not in denied.payload["lease"]  # the fence stays with its holder

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
