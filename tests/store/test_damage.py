"""A store that survives its engine: one byte flipped on disk inside a stored text makes libsql
panic when it reads it (``pyo3_runtime.PanicException``, a BaseException). The damaged request
fails at once with a precise error; every other request keeps working; a page holding the
damaged row comes back without it, naming it; the store reports ``critical`` until the damage
is gone; the integrity check answers with the damage (SQLite's own check sees none). Writes the
file refuses (a real SQLITE_FULL through ``PRAGMA max_page_count``) make it ``degraded``. A
broken connection is reopened, and a database thread that dies fails everything at once and
takes the store actor down with it, so that its supervisor restarts it.

Real encrypted files in ``tmp_path``; every wait has a deadline.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from actors import ActorState, ActorSystem, HealthActor
from actors.storing import StoreActor
from bus import BusClient, RemoteError
from config.actors import ActorSettings
from store import (
    ExecutionOutcome,
    LibsqlStore,
    MasterKey,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    NotFound,
    StoreError,
    TaskSpec,
)
from store._sql import scalar
from store.database import Database
from store.errors import Damaged, EngineFailure, WriteRefused
from store.salvage import PartialPage
from tests.actors.kit import spawn_instance
from tests.bus.waits import eventually
from tests.store.conftest import at
from tests.store.damage import (
    PAGE,
    Flip,
    find_malforming_flip,
    find_panicking_flip,
    read_all,
)

T = TypeVar("T")
DEADLINE = 5.0  # every store request here answers within it, or the test fails
VICTIM, BYSTANDER = "user.victim", "user.bystander"
LONG_ERROR = "disk quota exceeded; " * 170  # ~3,600 characters: most of a page


async def soon(awaitable: Awaitable[T]) -> T:
    return await asyncio.wait_for(awaitable, DEADLINE)


@dataclass(frozen=True, slots=True)
class DamagedFile:
    path: Path
    key: MasterKey
    execution_id: str  # the execution whose error message is damaged
    rowid: int
    victim_runs: tuple[str, ...]  # the victim's other executions, newest first
    bystander_runs: tuple[str, ...]
    flip: Flip

    def store(self) -> LibsqlStore:
        return LibsqlStore(self.path, master_key=self.key, environ={})


async def write_and_damage(path: Path) -> DamagedFile:
    """Two tasks with their runs, a dead letter and a missed run, written through the store;
    then, the store closed, one byte flipped inside the long error message of the victim's
    oldest run."""
    key = MasterKey.generate()
    store = LibsqlStore(path, master_key=key, environ={})
    await store.start()
    for task_id in (VICTIM, BYSTANDER):
        spec = TaskSpec(task_id=task_id, task_class="Job", schedule="@hourly")
        await store.put_task(spec, now=at(0))
    runs: dict[str, list[str]] = {VICTIM: [], BYSTANDER: []}
    for task_id, count in ((VICTIM, 5), (BYSTANDER, 3)):
        for hour in range(count):
            failed = task_id == VICTIM and hour == 0
            outcome = ExecutionOutcome(
                completed_at=at(3600 * hour + 1),
                success=not failed,
                result=None if failed else {"hour": hour},
                error_message=LONG_ERROR if failed else None,
            )
            new = NewExecution(
                task_id=task_id,
                scheduled_at=at(3600 * hour),
                started_at=at(3600 * hour),
                outcome=outcome,
            )
            runs[task_id].append((await store.record_execution(new)).record.execution_id)
    letter = NewDeadLetter(
        task_id=BYSTANDER,
        scheduled_at=at(60),
        attempts=3,
        error_type="Boom",
        last_error="boom",
        reason="exhausted",
        failed_at=at(120),
    )
    await store.add_dead_letter(letter)
    missed = NewMissedRun(first_at=at(30), last_at=at(30), count=1, reason="misfire: skipped")
    await store.record_missed(BYSTANDER, [missed], now=at(40))
    await store.close()

    damaged_id = runs[VICTIM][0]
    rowid = read_all(
        path, key, "SELECT rowid FROM task_executions WHERE execution_id = ?", [damaged_id]
    )
    sound = [
        ("SELECT * FROM task_executions WHERE execution_id != ?", [damaged_id]),
        *((f"SELECT * FROM {table}", []) for table in _TABLES),
    ]
    flip = find_panicking_flip(
        path, key, ("SELECT * FROM task_executions WHERE execution_id = ?", [damaged_id]), sound
    )
    flip.apply(path)
    assert "Utf8Error" in flip.error
    with pytest.raises(BaseException, match="Utf8Error") as caught:  # libsql itself panics
        read_all(path, key, "SELECT error_message FROM task_executions WHERE rowid = ?", rowid[0])
    assert type(caught.value).__name__ == "PanicException"
    assert not isinstance(caught.value, Exception)
    assert read_all(path, key, "PRAGMA integrity_check") == [("ok",)]  # SQLite sees nothing
    return DamagedFile(
        path=path,
        key=key,
        execution_id=damaged_id,
        rowid=rowid[0][0],
        victim_runs=tuple(reversed(runs[VICTIM][1:])),
        bystander_runs=tuple(reversed(runs[BYSTANDER])),
        flip=flip,
    )


_TABLES = (
    "scheduled_tasks",
    "dead_letters",
    "missed_runs",
    "scheduler_lease",
    "schema_version",
    "sqlite_master",
)


@pytest.fixture
async def damaged(db_path: Path) -> DamagedFile:
    return await write_and_damage(db_path)


@pytest.fixture
async def opened(damaged: DamagedFile) -> AsyncIterator[LibsqlStore]:
    store = damaged.store()
    await soon(store.start())
    yield store
    await soon(store.close())


def problem_of(damaged: DamagedFile) -> str:
    """How the integrity check names the damaged row."""
    return f"task_executions row {damaged.rowid} (execution_id {damaged.execution_id!r})"


# ------------------------------------------------------------------ the store itself


async def test_the_flip_lands_in_a_page_of_the_file_and_not_in_its_header(
    damaged: DamagedFile,
) -> None:
    assert damaged.flip.offset >= PAGE
    assert damaged.flip.offset < damaged.path.stat().st_size


async def test_the_damaged_read_fails_at_once_naming_what_and_the_engine_error(
    damaged: DamagedFile, opened: LibsqlStore
) -> None:
    with pytest.raises(Damaged) as caught:
        await soon(opened.get_execution(damaged.execution_id))
    error = caught.value
    assert str(error).startswith(
        f"store {damaged.path}: cannot read execution {damaged.execution_id!r}: libsql panicked: "
    )
    assert damaged.flip.error in str(error)
    assert error.what == f"execution {damaged.execution_id!r}"
    assert type(error.__cause__).__name__ == "PanicException"

    with pytest.raises(Damaged, match=f"cannot read the status of task {VICTIM!r}: .*Utf8Error"):
        await soon(opened.task_status(VICTIM))  # its last error is the damaged message


async def test_every_other_request_keeps_working_around_the_damaged_one(
    damaged: DamagedFile, opened: LibsqlStore
) -> None:
    for _ in range(3):  # the thread survives the panic, again and again
        results = await soon(
            asyncio.gather(
                opened.get_execution(damaged.execution_id),
                opened.get_task(VICTIM),
                opened.get_execution(damaged.victim_runs[0]),
                opened.history(BYSTANDER),
                opened.task_status(BYSTANDER),
                opened.list_tasks(),
                opened.stats(),
                opened.dead_letters(),
                opened.missed_runs(BYSTANDER),
                return_exceptions=True,
            )
        )
        assert isinstance(results[0], Damaged)
        assert all(not isinstance(result, BaseException) for result in results[1:]), results
    assert [run.execution_id for run in (await opened.history(BYSTANDER)).items] == list(
        damaged.bystander_runs
    )
    assert [task.task_id for task in (await opened.list_tasks()).items] == [BYSTANDER, VICTIM]
    assert (await opened.stats()).overall.runs == 8

    new = NewExecution(task_id=BYSTANDER, scheduled_at=at(99_999), started_at=at(99_999))
    recorded = await soon(opened.record_execution(new))  # and writes go on
    assert (await soon(opened.get_execution(recorded.record.execution_id))).task_id == BYSTANDER


async def test_a_page_holding_the_damaged_row_returns_the_others_and_names_it(
    damaged: DamagedFile, opened: LibsqlStore
) -> None:
    page = await soon(opened.history(VICTIM))
    assert [run.execution_id for run in page.items] == list(damaged.victim_runs)
    assert isinstance(page, PartialPage)
    assert len(page.unreadable) == 1
    assert page.unreadable[0].startswith(f"{problem_of(damaged)}: cannot read error_message: ")
    assert "libsql panicked" in page.unreadable[0]
    assert damaged.flip.error in page.unreadable[0]

    # Paging past it, two at a time, visits every readable run once and ends.
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        step = await soon(opened.history(VICTIM, before=cursor, limit=2))
        seen.extend(run.execution_id for run in step.items)
        cursor = step.next_cursor
        if cursor is None:
            break
    assert seen == list(damaged.victim_runs)

    unsettled = await soon(opened.unsettled_executions())  # the damaged run failed: unsettled
    assert unsettled.items == ()
    assert isinstance(unsettled, PartialPage)
    assert unsettled.unreadable[0].startswith(problem_of(damaged))


async def test_critical_names_the_damage_until_a_check_finds_it_gone(
    damaged: DamagedFile, opened: LibsqlStore
) -> None:
    assert opened.critical() == []  # nothing is known before anything was read
    with pytest.raises(Damaged):
        await soon(opened.get_execution(damaged.execution_id))
    await soon(opened.history(VICTIM))
    reasons = opened.critical()
    prefix = f"store cannot read {damaged.path}: "
    assert reasons[0].startswith(f"{prefix}execution {damaged.execution_id!r}: libsql panicked")
    assert reasons[1].startswith(f"{prefix}the history of task {VICTIM!r}: rows left out: ")
    assert len(reasons) == 2

    await soon(opened.get_task(BYSTANDER))  # other reads succeeding clear nothing
    assert len(opened.critical()) == 2

    problems = await soon(opened.integrity_check())
    assert len(problems) == 1
    assert problems[0].startswith(f"{problem_of(damaged)}: cannot read error_message: ")
    assert opened.critical() == [f"{prefix}{problems[0]}"]  # the check's findings replace all

    # Retention deletes the damaged run (the oldest, with the bystander's first): all is sound.
    report = await soon(opened.run_retention(now=at(1800) + timedelta(days=1), retention_days=1))
    assert report.executions_expired == 2
    assert await soon(opened.integrity_check()) == ["ok"]
    assert opened.critical() == []
    with pytest.raises(NotFound):
        await soon(opened.get_execution(damaged.execution_id))
    assert type(await soon(opened.history(VICTIM))) is not PartialPage


async def test_reading_the_same_thing_in_full_clears_its_mark(
    damaged: DamagedFile, opened: LibsqlStore
) -> None:
    with pytest.raises(Damaged):
        await soon(opened.get_execution(damaged.execution_id))
    assert len(opened.critical()) == 1
    await soon(opened.run_retention(now=at(1800) + timedelta(days=1), retention_days=1))
    with pytest.raises(NotFound):  # read in full: it is gone
        await soon(opened.get_execution(damaged.execution_id))
    assert opened.critical() == []


async def test_the_integrity_check_answers_with_the_damage_sqlite_does_not_see(
    damaged: DamagedFile, opened: LibsqlStore
) -> None:
    sqlite_says = await soon(opened.worker.call(Database.integrity_check))
    assert sqlite_says == ["ok"]
    problems = await soon(opened.integrity_check())
    assert problems == [
        f"{problem_of(damaged)}: cannot read error_message: libsql panicked: "
        f"{damaged.flip.error} (a stored text is not UTF-8: its page is damaged)"
    ]


async def test_the_integrity_check_reports_a_page_sqlite_gives_up_on(db_path: Path) -> None:
    key = MasterKey.generate()
    store = LibsqlStore(db_path, master_key=key, environ={})
    await store.start()
    for n in range(200):
        spec = TaskSpec(task_id=f"user.t{n:03}", task_class="Job", schedule="@daily")
        await store.put_task(spec, now=at(0))
    await store.close()
    sound = [(f"SELECT * FROM {table}", []) for table in _TABLES if table != "scheduled_tasks"]
    flip = find_malforming_flip(db_path, key, ("SELECT * FROM scheduled_tasks", []), sound)
    flip.apply(db_path)
    reopened = LibsqlStore(db_path, master_key=key, environ={})
    await soon(reopened.start())
    try:
        with pytest.raises(Damaged, match="cannot read the task list: database disk image is mal"):
            await soon(reopened.list_tasks())
        assert reopened.critical()
        # what does not need it works (statistics do: they count tasks, of their incarnations)
        assert (await soon(reopened.dead_letters())).items == ()
        problems = await soon(reopened.integrity_check())
        assert problems == [
            "integrity_check stopped: database disk image is malformed",
            "table scheduled_tasks: database disk image is malformed",
        ]
        prefix = f"store cannot read {db_path}: "
        assert reopened.critical() == [prefix + problem for problem in problems]
    finally:
        await soon(reopened.close())


# ------------------------------------------------------------------ writes the file refuses


async def limit_pages(store: LibsqlStore, pages: int | None) -> int:
    """SQLite's ``max_page_count`` on the store's connection: the file may not grow past
    ``pages`` (None: the current size); writes that need more fail with SQLITE_FULL, "database
    or disk is full", as on a full disk. Returns the limit set."""

    def limit(database: Database) -> int:
        count = pages or int(scalar(database.connection, "PRAGMA page_count"))
        return int(scalar(database.connection, f"PRAGMA max_page_count = {count}"))

    return await soon(store.worker.call(limit))


def big_run(n: int) -> NewExecution:
    outcome = ExecutionOutcome(completed_at=at(n + 1), success=False, error_message="x" * 3_900)
    return NewExecution(task_id="user.disk", scheduled_at=at(n), started_at=at(n), outcome=outcome)


async def write_until_refused(store: LibsqlStore) -> WriteRefused:
    """Big runs, one at a time, until the file would have to grow past its limit."""
    for n in range(50):
        try:
            await soon(store.record_execution(big_run(n)))
        except WriteRefused as exc:
            return exc
    raise AssertionError("50 runs of 4 KB each fitted in the file")


async def test_writes_the_full_disk_refuses_fail_at_once_and_degrade_the_store_until_one_succeeds(
    db_path: Path,
) -> None:
    store = LibsqlStore(db_path, master_key=MasterKey.generate(), environ={})
    await store.start()
    try:
        spec = TaskSpec(task_id="user.disk", task_class="Job", schedule="@daily")
        await store.put_task(spec, now=at(0))
        await limit_pages(store, None)
        refused = await write_until_refused(store)
        assert str(refused) == (
            f"store {db_path}: cannot write, nothing written: database or disk is full"
        )
        assert store.degraded() == ["store refuses writes: database or disk is full"]
        assert store.critical() == []
        assert (await soon(store.get_task("user.disk"))).task_id == "user.disk"  # reads go on

        # A group of writes fails as one (SQLite rolled it back), each with the same reason.
        results = await soon(
            asyncio.gather(
                *(store.record_execution(big_run(100 + n)) for n in range(8)),
                return_exceptions=True,
            )
        )
        assert [str(result) for result in results] == [str(refused)] * 8
        assert store.degraded() == ["store refuses writes: database or disk is full"]
        stats = await soon(store.stats())

        await limit_pages(store, 1_000_000)  # space again
        recorded = await soon(store.record_execution(big_run(200)))
        assert store.degraded() == []
        assert (await soon(store.get_execution(recorded.record.execution_id))).success is False
        assert (await soon(store.stats())).overall.runs == stats.overall.runs + 1
        assert await soon(store.integrity_check()) == ["ok"]
    finally:
        await soon(store.close())


# ------------------------------------------------------------------ the thread and its connection


async def test_a_connection_libsql_cannot_use_is_reopened_and_the_store_goes_on(
    db_path: Path,
) -> None:
    store = LibsqlStore(db_path, master_key=MasterKey.generate(), environ={})
    await store.start()
    try:
        spec = TaskSpec(task_id="user.a", task_class="Job", schedule="@daily")
        await store.put_task(spec, now=at(0))

        def break_it(database: Database) -> None:
            database.connection.close()  # libsql panics on every later use of it
            database.connection.execute("SELECT 1")

        with pytest.raises(EngineFailure) as caught:
            await soon(store.worker.call(break_it, what="a test of a broken connection"))
        assert str(caught.value) == (
            f"store {db_path}: a test of a broken connection: libsql panicked: called "
            f"`Option::unwrap()` on a `None` value; the connection was unusable and has been "
            f"reopened"
        )
        assert (await soon(store.get_task("user.a"))).task_id == "user.a"
        spec = TaskSpec(task_id="user.b", task_class="Job", schedule="@daily")
        await soon(store.put_task(spec, now=at(1)))
        assert [t.task_id for t in (await soon(store.list_tasks())).items] == ["user.a", "user.b"]
        assert store.critical() == []
    finally:
        await soon(store.close())


async def test_a_thread_that_dies_fails_what_is_queued_and_every_later_request_at_once(
    db_path: Path,
) -> None:
    store = LibsqlStore(db_path, master_key=MasterKey.generate(), environ={})
    await store.start()
    try:
        spec = TaskSpec(task_id="user.a", task_class="Job", schedule="@daily")
        await store.put_task(spec, now=at(0))

        def end_the_thread(database: Database) -> None:
            raise SystemExit("told to stop")

        results = await soon(
            asyncio.gather(
                store.worker.call(end_the_thread),
                store.get_task("user.a"),
                store.put_task(spec, now=at(1)),
                return_exceptions=True,
            )
        )
        died = f"store {db_path}: its database thread died: SystemExit: told to stop"
        assert [str(result) for result in results] == [died] * 3
        assert all(type(result) is StoreError for result in results)
        with pytest.raises(StoreError, match="its database thread died"):
            await soon(store.get_task("user.a"))  # refused at once, never queued
        assert str(await soon(store.serving())) == died
        assert store.critical() == [died]

        await soon(store.start())  # opens the file again
        assert (await soon(store.get_task("user.a"))).task_id == "user.a"
        assert store.critical() == []
    finally:
        await soon(store.close())


# ------------------------------------------------------------------ on the bus, with health


@pytest.fixture
async def system() -> AsyncIterator[ActorSystem]:
    settings = ActorSettings(
        max_restarts=2,
        restart_backoff_s=0.01,
        shutdown_deadline_s=2.0,
        liveness_interval_s=0.05,
    )
    system = await ActorSystem.embedded(settings=settings, name="system")
    await system.spawn(lambda: HealthActor(publish_interval_s=60.0))
    yield system
    await asyncio.wait_for(system.stop(deadline_s=2.0), 10)


async def asker(system: ActorSystem) -> BusClient:
    """A client allowed to ask every ``store.*`` topic: the scheduler's identity (the default
    rules give the store's writes to schedulers only)."""
    return await system.client("scheduler")


async def health_of(client: BusClient, status: str) -> dict[str, Any]:
    """The store's entry in the health report, once the whole report says ``status``."""
    report: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal report
        report = dict((await client.ask("scheduler.health", timeout=DEADLINE)).payload)
        return bool(report["status"] == status)

    await eventually(reached, f"health {status}", timeout=DEADLINE)
    entry: dict[str, Any] = report["actors"]["store"]
    return entry


async def test_on_the_bus_the_store_answers_health_turns_critical_and_the_check_reports(
    system: ActorSystem, damaged: DamagedFile
) -> None:
    actor = await spawn_instance(system, lambda: StoreActor(damaged.store(), clock=lambda: at(0)))
    client = await asker(system)

    with pytest.raises(RemoteError) as caught:
        await client.ask(
            "store.execution.get", {"execution_id": damaged.execution_id}, timeout=DEADLINE
        )
    assert caught.value.code == "store_error"
    assert f"cannot read execution {damaged.execution_id!r}: libsql panicked" in caught.value.reason

    task = await client.ask("store.task.get", {"task_id": BYSTANDER}, timeout=DEADLINE)
    assert task.payload["task"]["task_id"] == BYSTANDER
    history = await client.ask("store.execution.history", {"task_id": VICTIM}, timeout=DEADLINE)
    ids = [run["execution_id"] for run in history.payload["executions"]]
    assert ids == list(damaged.victim_runs)
    assert len(history.payload["unreadable"]) == 1
    assert history.payload["unreadable"][0].startswith(problem_of(damaged))

    entry = await health_of(client, "critical")
    assert entry["status"] == "critical"
    assert entry["state"] == "running"
    assert entry["reasons"][0].startswith(
        f"store cannot read {damaged.path}: execution {damaged.execution_id!r}: libsql panicked"
    )
    assert actor.critical() == entry["reasons"]

    check = await client.ask("store.maintenance.integrity_check", {}, timeout=DEADLINE)
    assert check.payload["ok"] is False
    assert len(check.payload["problems"]) == 1
    assert check.payload["problems"][0].startswith(f"{problem_of(damaged)}: cannot read error_")

    retention = {"retention_days": 0.5}  # the actor's clock is at(0): nothing expires...
    await client.ask("store.retention.run", retention, timeout=DEADLINE)
    assert actor.critical()  # ...so the damage is still known
    assert (await client.ask("store.stats", {}, timeout=DEADLINE)).payload["overall"]["runs"] == 8


async def test_on_the_bus_a_full_disk_degrades_health_until_a_write_succeeds(
    system: ActorSystem, db_path: Path
) -> None:
    store = LibsqlStore(db_path, master_key=MasterKey.generate(), environ={})
    actor = await spawn_instance(system, lambda: StoreActor(store, clock=lambda: at(0)))
    client = await asker(system)
    task = {"task_id": "user.disk", "task_class": "Job", "schedule": "@daily"}
    await client.ask("store.task.put", task, timeout=DEADLINE)
    await limit_pages(store, None)
    run = {
        "task_id": "user.disk",
        "scheduled_at": "2024-05-01T12:00:00Z",
        "started_at": "2024-05-01T12:00:00Z",
        "completed_at": "2024-05-01T12:00:01Z",
        "success": False,
        "error_message": "x" * 3_900,
    }
    refused = None
    for n in range(20):  # until the file would have to grow
        run["scheduled_at"] = run["started_at"] = f"2024-05-01T12:{n:02}:00Z"
        run["completed_at"] = f"2024-05-01T12:{n:02}:01Z"
        try:
            await client.ask("store.execution.record", run, timeout=DEADLINE)
        except RemoteError as exc:
            refused = exc
            break
    assert refused is not None
    assert refused.code == "store_error", refused
    assert refused.reason.endswith("cannot write, nothing written: database or disk is full")

    entry = await health_of(client, "degraded")
    assert entry["reasons"] == ["store refuses writes: database or disk is full"]
    assert actor.degraded() == entry["reasons"]

    await limit_pages(store, 1_000_000)
    await client.ask("store.execution.record", run, timeout=DEADLINE)
    assert actor.degraded() == []
    await health_of(client, "healthy")


async def test_a_store_actor_whose_thread_died_dies_and_is_restarted_serving_again(
    system: ActorSystem, db_path: Path
) -> None:
    store = LibsqlStore(db_path, master_key=MasterKey.generate(), environ={})
    supervised_actor = await spawn_instance(system, lambda: StoreActor(store))
    client = await asker(system)
    task = {"task_id": "user.a", "task_class": "Job", "schedule": "@daily"}
    await client.ask("store.task.put", task, timeout=DEADLINE)
    supervised = system.status()["store"]
    assert supervised["restarts"] == 0

    def end_the_thread(database: Database) -> None:
        raise SystemExit("told to stop")

    with pytest.raises(StoreError, match="its database thread died: SystemExit: told to stop"):
        await soon(supervised_actor.store.worker.call(end_the_thread))  # type: ignore[attr-defined]

    await eventually(
        lambda: (
            system.status()["store"]["restarts"] == 1
            and system.status()["store"]["state"] == ActorState.RUNNING
        ),
        "the store actor restarted",
        timeout=DEADLINE,
    )
    reply = await client.ask("store.task.get", {"task_id": "user.a"}, timeout=DEADLINE)
    assert reply.payload["task"]["task_id"] == "user.a"
    await health_of(client, "healthy")


async def test_a_store_that_cannot_reopen_its_file_fails_for_good_and_health_says_why(
    system: ActorSystem, db_path: Path
) -> None:
    store = LibsqlStore(db_path, master_key=MasterKey.generate(), environ={})
    actor = await spawn_instance(system, lambda: StoreActor(store))
    client = await asker(system)
    task = {"task_id": "user.a", "task_class": "Job", "schedule": "@daily"}
    await client.ask("store.task.put", task, timeout=DEADLINE)

    def ruin_it(database: Database) -> None:
        database.checkpoint()
        database.connection.close()
        Flip(16, 0x01, "").apply(db_path)  # page 1's header: the file no longer opens
        database.connection.execute("SELECT 1")  # libsql panics: the connection is closed

    with pytest.raises(StoreError, match="its database thread died: cannot open store"):
        await soon(actor.store.worker.call(ruin_it))  # type: ignore[attr-defined]
    with pytest.raises(RemoteError) as caught:  # answered at once, whatever the actor's state
        await client.ask("store.task.get", {"task_id": "user.a"}, timeout=DEADLINE)
    assert caught.value.code in ("store_error", "responder_lost", "no_responder")

    entry = await health_of(client, "critical")
    assert entry["state"] == "failed"
    assert "cannot open store" in entry["reasons"][0]
