"""``scheduler.task.create_many`` and ``scheduler.task.apply`` on a real embedded system (broker,
encrypted store actor, scheduler), and the store's batch write ``put_tasks`` under them: each
item validated as a single create is, one fenced write per request, a per-item result in order;
apply's plan (create, update, unchanged, delete with prune), its dry run, and its ownership
rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem
from actors.storing.client import StoreClient
from store import LibsqlStore
from store.errors import Conflict, InvalidValue, LeaseLost
from store.leases import Fence
from store.records import TaskSpec
from tests.scheduler import conftest as scheduling
from tests.scheduler.rig import Caller, Scheduling

CLASS = "reports:Report"

# The scheduler tests' fixtures: broker, store actor and scheduler on a real encrypted database.
system = scheduling.system
store_clock = scheduling.store_clock
scheduler_settings = scheduling.scheduler_settings
start_scheduler = scheduling.start_scheduler
caller = scheduling.caller


def definition(task_id: str, schedule: str = "@hourly", **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "task_class": CLASS, "schedule": schedule, **extra}


@pytest.fixture
async def other(system: ActorSystem) -> AsyncIterator[Caller]:
    """A second identity, not an admin."""
    client = await system.client("ana")
    events = await client.subscribe("scheduler.")
    yield Caller(client, events)
    await client.stop()


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every ``put_tasks`` the scheduler asks of the store; a single ``put_task``
    fails the test."""
    sizes: list[int] = []
    batch = StoreClient.put_tasks

    async def counted(self: StoreClient, puts: Any, **options: Any) -> Any:
        sizes.append(len(puts))
        return await batch(self, puts, **options)

    async def single(self: StoreClient, *args: Any, **options: Any) -> Any:
        raise AssertionError("a batch wrote one task at a time")

    monkeypatch.setattr(StoreClient, "put_tasks", counted)
    monkeypatch.setattr(StoreClient, "put_task", single)
    return sizes


# ------------------------------------------------------------------ create_many


async def test_create_many_creates_the_valid_items_in_one_write_and_answers_each_in_order(
    start_scheduler: Scheduling,
    caller: Caller,
    other: Caller,
    writes: list[int],
) -> None:
    await start_scheduler()
    reply = await other.ask(
        "scheduler.task.create_many",
        tasks=[
            definition("user.a", timezone="Europe/Berlin", config={"to": "a@example.org"}),
            definition("user.b", "61 * * * *"),  # no minute 61
            definition("maintenance.c"),  # not created over the bus
            definition("user.a"),  # the id the first one takes
            ["not", "a", "map"],
            definition("user.d", enabled=False),
            {**definition("user.e"), "owner": "root"},  # not a field
        ],
    )
    results = reply["results"]
    assert [r["task_id"] for r in results] == [
        "user.a",
        "user.b",
        "maintenance.c",
        "user.a",
        None,
        "user.d",
        "user.e",
    ]
    assert [r["ok"] for r in results] == [True, False, False, False, False, True, False]
    codes = [r["error"]["code"] for r in results if not r["ok"]]
    assert codes == ["invalid", "denied", "exists", "invalid", "invalid"]
    assert results[1]["error"]["reason"].startswith("schedule:")
    assert results[6]["error"]["reason"].startswith("owner: is not a field")
    assert writes == [3]  # one write: the two new ones and the second user.a (refused there)

    created = results[0]["task"]
    assert created["owner"] == "ana"  # the requester
    assert created["version"] == 1
    assert created["timezone"] == "Europe/Berlin"
    assert created["config"] == {"to": "a@example.org"}
    next_run = datetime.fromisoformat(created["next_run"])
    assert datetime.now(UTC) < next_run <= datetime.now(UTC) + timedelta(hours=1)
    assert results[5]["task"]["enabled"] is False
    assert (await other.ask("scheduler.task.get", task_id="user.a"))["task"] == created
    status = await other.ask("scheduler.task.status", task_id="user.a")
    assert status["next_fire"] == created["next_run"]  # in the roster: it will fire
    defined = await other.event("scheduler.task.status", lambda e: e.payload["task_id"] == "user.a")
    assert defined.payload["state"] == "defined"

    for missing in ("user.b", "maintenance.c", "user.e"):
        refused = await caller.refused("scheduler.task.get", task_id=missing)
        assert refused.code == "not_found"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "tasks: is required"),
        ({"tasks": {"task_id": "user.a"}}, "tasks: expected a list"),
        ({"tasks": []}, "tasks: has 0 entries"),
        ({"tasks": [definition(f"user.t{i}") for i in range(1_001)]}, "tasks: has 1001 entries"),
        ({"tasks": [definition("user.a")], "prune": True}, "prune: is not a field"),
    ],
    ids=["no tasks", "not a list", "empty", "too many", "unknown field"],
)
async def test_create_many_refuses_a_bad_request_whole(
    start_scheduler: Scheduling, caller: Caller, payload: dict[str, Any], field: str
) -> None:
    await start_scheduler()
    refused = await caller.refused("scheduler.task.create_many", **payload)
    assert refused.code == "invalid"
    assert field in refused.reason
    assert (await caller.ask("scheduler.task.list"))["tasks"] == []


async def test_create_many_of_a_thousand_is_one_write(
    start_scheduler: Scheduling, caller: Caller, writes: list[int]
) -> None:
    await start_scheduler()
    tasks = [definition(f"user.n{i:04d}", "every 1h") for i in range(1_000)]
    reply = await caller.ask("scheduler.task.create_many", tasks=tasks)
    assert all(result["ok"] for result in reply["results"])
    assert writes == [1_000]
    listed = await caller.ask("scheduler.task.list", limit=1_000)
    assert len(listed["tasks"]) == 1_000


# ------------------------------------------------------------------ apply


async def test_apply_plans_creates_updates_and_prunes_only_the_requesters_user_tasks(
    start_scheduler: Scheduling, caller: Caller, other: Caller, writes: list[int]
) -> None:
    await start_scheduler()
    await other.ask(
        "scheduler.task.create_many",
        tasks=[definition("user.keep"), definition("user.change"), definition("user.old")],
    )
    await caller.ask("scheduler.task.create_many", tasks=[definition("user.admins")])
    writes.clear()
    wanted = [
        definition("user.keep"),
        definition("user.change", "@daily", config={"n": 1}),
        definition("user.new"),
    ]

    dry = await other.ask("scheduler.task.apply", tasks=wanted, prune=True, dry_run=True)
    assert dry["dry_run"] is True
    assert [(e["task_id"], e["action"]) for e in dry["plan"]] == [
        ("user.keep", "unchanged"),
        ("user.change", "update"),
        ("user.new", "create"),
        ("user.old", "delete"),  # theirs, not in the list: pruned
    ]  # not user.admins (another identity's), nor any code-defined task
    assert dry["plan"][1]["changes"] == ["config", "schedule"]
    assert dry["counts"] == {"create": 1, "update": 1, "delete": 1, "unchanged": 1}
    assert writes == []  # a dry run writes nothing
    assert (await other.ask("scheduler.task.get", task_id="user.old"))["task"]
    assert (await other.refused("scheduler.task.get", task_id="user.new")).code == "not_found"

    applied = await other.ask("scheduler.task.apply", tasks=wanted, prune=True)
    assert applied["dry_run"] is False
    assert applied["failed"] == 0
    assert [e["ok"] for e in applied["plan"]] == [True, True, True, True]
    assert writes == [2]  # the create and the update, in one write
    changed = (await other.ask("scheduler.task.get", task_id="user.change"))["task"]
    assert (changed["schedule"], changed["config"], changed["version"]) == ("@daily", {"n": 1}, 2)
    assert applied["plan"][1]["task"] == changed
    assert (await other.ask("scheduler.task.get", task_id="user.new"))["task"]["owner"] == "ana"
    assert (await other.refused("scheduler.task.get", task_id="user.old")).code == "not_found"
    assert (await caller.ask("scheduler.task.get", task_id="user.admins"))["task"]

    again = await other.ask("scheduler.task.apply", tasks=wanted, prune=True)
    assert {e["action"] for e in again["plan"]} == {"unchanged"}
    assert writes == [2]


async def test_apply_without_prune_keeps_unlisted_tasks_and_an_empty_list_prunes_all(
    start_scheduler: Scheduling, other: Caller
) -> None:
    await start_scheduler()
    await other.ask("scheduler.task.create_many", tasks=[definition("user.a")])
    kept = await other.ask("scheduler.task.apply", tasks=[definition("user.b")])
    assert [(e["task_id"], e["action"]) for e in kept["plan"]] == [("user.b", "create")]
    assert (await other.ask("scheduler.task.get", task_id="user.a"))["task"]
    emptied = await other.ask("scheduler.task.apply", tasks=[], prune=True)
    assert [(e["task_id"], e["action"], e["ok"]) for e in emptied["plan"]] == [
        ("user.a", "delete", True),
        ("user.b", "delete", True),
    ]
    assert (await other.ask("scheduler.task.list"))["tasks"] == []


async def test_apply_does_not_touch_another_identitys_task_of_the_same_id(
    start_scheduler: Scheduling, caller: Caller, other: Caller
) -> None:
    await start_scheduler()
    await caller.ask("scheduler.task.create_many", tasks=[definition("user.shared")])
    reply = await other.ask("scheduler.task.apply", tasks=[definition("user.shared", "@daily")])
    (entry,) = reply["plan"]
    assert (entry["action"], entry["ok"], entry["error"]["code"]) == ("create", False, "exists")
    assert "is not one of 'ana''s tasks" in entry["error"]["reason"]
    assert reply["failed"] == 1
    stored = (await caller.ask("scheduler.task.get", task_id="user.shared"))["task"]
    assert (stored["schedule"], stored["owner"], stored["version"]) == ("@hourly", "tester", 1)


@pytest.mark.parametrize(
    ("tasks", "reason"),
    [
        ([definition("user.a"), definition("user.b", "* * *")], "tasks[1].schedule:"),
        ([definition("user.a"), definition("user.a")], "tasks[1].task_id: 'user.a' is also"),
        ([definition("user.a"), definition("security.x")], "tasks[1]:"),
        ([definition("user.a"), {"task_id": "user.c"}], "tasks[1].task_class: is required"),
        ([definition("user.a"), "user.c"], "tasks[1]: expected a map"),
    ],
    ids=["bad schedule", "duplicate id", "not a user task", "missing class", "not a map"],
)
async def test_apply_refuses_a_bad_list_whole_naming_the_item(
    start_scheduler: Scheduling, other: Caller, tasks: list[Any], reason: str
) -> None:
    await start_scheduler()
    refused = await other.refused("scheduler.task.apply", tasks=tasks, prune=True)
    assert refused.code in ("invalid", "denied")
    assert reason in refused.reason
    assert (await other.ask("scheduler.task.list"))["tasks"] == []


# ------------------------------------------------------------------ the store's batch write


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[LibsqlStore]:
    opened = LibsqlStore(tmp_path / "batch.db", environ={})
    await opened.start()
    yield opened
    await opened.close()


def spec(task_id: str, **fields: Any) -> TaskSpec:
    fields.setdefault("schedule", "@hourly")
    return TaskSpec(task_id=task_id, task_class=CLASS, owner="o", **fields)


async def test_put_tasks_refuses_items_alone_and_writes_the_others(store: LibsqlStore) -> None:
    now = datetime.now(UTC)
    await store.put_task(spec("user.taken"), now=now)
    huge = {"blob": "x" * (store.settings.max_value_bytes + 1)}
    outcomes = await store.put_tasks(
        [
            (spec("user.a"), 0),
            (spec("user.taken"), 0),  # exists
            (spec("user.big", config=huge), 0),  # too big
            (spec("user.taken", schedule="@daily"), 1),  # an update at its version
            (spec("user.b"), None),
        ],
        now=now,
    )
    assert isinstance(outcomes[1], Conflict)
    assert isinstance(outcomes[2], InvalidValue)
    records = [o.record for o in outcomes if not isinstance(o, Exception)]
    assert [(r.task_id, r.version) for r in records] == [
        ("user.a", 1),
        ("user.taken", 2),
        ("user.b", 1),
    ]
    assert (await store.get_task("user.taken")).schedule == "@daily"
    assert [t.task_id for t in (await store.list_tasks()).items] == [
        "user.a",
        "user.b",
        "user.taken",
    ]


async def test_put_tasks_with_a_stale_fence_writes_nothing(store: LibsqlStore) -> None:
    now = datetime.now(UTC)
    grant = await store.acquire_lease("scheduler", "one", ttl_s=0.001, now=now)
    later = now + timedelta(seconds=1)
    await store.acquire_lease("scheduler", "two", ttl_s=60, now=later)  # a new token
    with pytest.raises(LeaseLost):
        await store.put_tasks(
            [(spec("user.a"), 0)], now=later, fence=Fence("scheduler", grant.lease.token)
        )
    assert not (await store.list_tasks()).items
    with pytest.raises(InvalidValue, match="tasks: has 1001 entries"):
        await store.put_tasks([(spec(f"user.t{i}"), 0) for i in range(1_001)], now=later)


async def test_create_many_checks_dependencies_as_create_does(
    start_scheduler: Scheduling, other: Caller
) -> None:
    await start_scheduler()
    await other.ask("scheduler.task.create_many", tasks=[definition("user.first")])
    reply = await other.ask(
        "scheduler.task.create_many",
        tasks=[
            definition("user.then", run_policy={"depends_on": ["user.first"]}),
            definition("user.lost", run_policy={"depends_on": ["user.nowhere"]}),
            definition("user.self", run_policy={"depends_on": ["user.self"]}),
        ],
    )
    results = reply["results"]
    assert [r["ok"] for r in results] == [True, False, False]
    assert results[1]["error"]["code"] == "invalid"
    assert "'user.nowhere': no such task" in results[1]["error"]["reason"]
    assert "cannot depend on itself" in results[2]["error"]["reason"]
    refused = await other.refused(
        "scheduler.task.apply",
        tasks=[definition("user.first"), definition("user.x", run_policy={"depends_on": ["x.y"]})],
    )
    assert refused.code == "invalid"
    assert refused.reason.startswith("tasks[1].run_policy.depends_on")
