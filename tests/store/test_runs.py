"""Durable runs: suspensions and wakes (one wake wins; the lost-wakeup rule), inboxes of signals
(bounded, refused to ended runs, payloads bounded like results and encrypted with the file),
cancel/pause/resume, pages of runs, start keys in ``record_fires``, the migrations from versions
7 and 8, and retention of ended runs and of the steps of runs that have not ended; child runs,
runs closed by their successful finish, stranded runs, inboxes bounded in bytes, and the answers
to queries stored with a suspension or a finish.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import libsql
import pytest

from store import (
    MAX_INBOX_BYTES,
    MAX_INBOX_SIGNALS,
    Conflict,
    ExecutionOutcome,
    InvalidValue,
    LibsqlStore,
    MasterKey,
    NewExecution,
    NewSignal,
    NotFound,
    RunRecord,
    RunSuspension,
    StepOutcome,
    TaskSpec,
    run_key,
)
from store.schema import MIGRATIONS
from store.values import to_us
from tests.store.conftest import StoreFactory, at, raw_rows

TASK = "user.report"
FIRE = at(0)
RUN = run_key(TASK, FIRE)


def suspension(
    *,
    attempt: int = 1,
    wake_at: datetime | None = None,
    waiting: str | None = None,
    consumed: int = 0,
    paused: bool = False,
    when: float = 10,
    fire: datetime = FIRE,
    task_id: str = TASK,
) -> RunSuspension:
    return RunSuspension(
        run_key=run_key(task_id, fire),
        task_id=task_id,
        scheduled_at=fire,
        attempt=attempt,
        wake_at=wake_at,
        waiting=waiting,
        consumed=consumed,
        paused=paused,
        at=at(when),
    )


def signal(
    name: str = "approve", payload: Any = None, *, key: str = RUN, when: float = 5
) -> NewSignal:
    return NewSignal(run_key=key, name=name, payload=payload, sender="alice", sent_at=at(when))


async def send(
    store: LibsqlStore, name: str = "approve", payload: Any = None, *, when: float = 5
) -> RunRecord:
    _, run = await store.put_signal(
        signal(name, payload, when=when), task_id=TASK, scheduled_at=FIRE
    )
    return run


async def control(
    store: LibsqlStore, action: str, *, reason: str | None = None, when: float = 20
) -> tuple[RunRecord, str]:
    return await store.control_run(
        RUN, task_id=TASK, scheduled_at=FIRE, action=action, reason=reason, now=at(when)
    )


# ------------------------------------------------------------------ suspend and wake


async def test_a_sleeping_run_wakes_once_when_its_time_comes(store: LibsqlStore) -> None:
    slept = await store.suspend_run(suspension(wake_at=at(100)))
    assert (slept.state, slept.wake_at, slept.attempt, slept.wakes) == ("sleeping", at(100), 1, 0)
    assert slept.suspended
    assert not slept.paused
    assert (slept.task_id, slept.scheduled_at, slept.created_at) == (TASK, FIRE, at(10))
    assert await store.wake_run(RUN, now=at(99)) is None  # not due yet
    woken = await store.wake_run(RUN, now=at(100))
    assert woken is not None
    assert (woken.state, woken.attempt, woken.wakes, woken.wake_at) == ("running", 2, 1, None)
    assert woken.updated_at == at(100)
    assert await store.wake_run(RUN, now=at(101)) is None  # running: nothing to wake
    assert await store.get_run(RUN) == woken
    # the woken attempt suspends again, then wakes as attempt 3
    await store.suspend_run(suspension(attempt=2, wake_at=at(200), when=150))
    again = await store.wake_run(RUN, now=at(300))
    assert again is not None
    assert (again.attempt, again.wakes) == (3, 2)


async def test_of_concurrent_wakes_exactly_one_wins(store: LibsqlStore) -> None:
    await store.suspend_run(suspension(wake_at=at(100)))
    woken = await asyncio.gather(*(store.wake_run(RUN, now=at(100)) for _ in range(8)))
    winners = [run for run in woken if run is not None]
    assert len(winners) == 1
    assert (winners[0].attempt, winners[0].wakes) == (2, 1)


async def test_unknown_runs_are_not_found_and_not_woken(store: LibsqlStore) -> None:
    assert await store.wake_run(RUN, now=at(0)) is None
    with pytest.raises(NotFound, match=rf"^run '{RUN}' not found$"):
        await store.get_run(RUN)
    assert await store.run_signals(RUN) == ()
    assert await store.finish_run(RUN, "succeeded", now=at(0)) is None


async def test_a_waiting_run_wakes_on_its_signal_or_its_timeout(store: LibsqlStore) -> None:
    waiting = await store.suspend_run(suspension(waiting="approve", wake_at=at(500)))
    assert (waiting.state, waiting.waiting, waiting.wake_at) == ("waiting", "approve", at(500))
    assert await store.wake_run(RUN, now=at(20)) is None
    other = await send(store, "comment", when=30)  # another name: no wake
    assert other.state == "waiting"
    assert other.signals == 1
    assert await store.wake_run(RUN, now=at(31)) is None
    run = await send(store, "approve", {"ok": True}, when=40)
    assert (run.state, run.waiting, run.signals) == ("waiting", "approve", 2)  # the caller wakes
    woken = await store.wake_run(RUN, now=at(41))
    assert woken is not None
    assert woken.state == "running"
    # the next attempt waits for a second approval, having consumed the first: its timeout
    # wakes it
    await store.suspend_run(
        suspension(attempt=2, waiting="approve", consumed=1, wake_at=at(600), when=50)
    )
    assert await store.wake_run(RUN, now=at(599)) is None
    timed_out = await store.wake_run(RUN, now=at(600))
    assert timed_out is not None
    assert timed_out.attempt == 3


async def test_a_signal_already_in_the_inbox_wakes_the_run_as_it_suspends(
    store: LibsqlStore,
) -> None:
    """The lost-wakeup rule: a signal that came while the attempt was ending is not lost. The
    answer says ``running`` (wake it now); the row stays waiting, and due, until a wake wins it
    (a scheduler taking over before that finds it among the suspended runs)."""
    await send(store, "approve", when=5)
    run = await store.suspend_run(suspension(waiting="approve"))
    assert (run.state, run.waiting, run.attempt, run.wakes) == ("running", "approve", 1, 0)
    assert [r.run_key for r in (await store.suspended_runs()).items] == [RUN]
    assert (await store.get_run(RUN)).state == "waiting"
    woken = await asyncio.gather(*(store.wake_run(RUN, now=at(11)) for _ in range(3)))
    winners = [r for r in woken if r is not None]
    assert len(winners) == 1
    assert (winners[0].state, winners[0].attempt, winners[0].wakes) == ("running", 2, 1)
    # consumed already: the same signal does not wake the next suspension
    again = await store.suspend_run(suspension(attempt=2, waiting="approve", consumed=1))
    assert again.state == "waiting"
    assert await store.wake_run(RUN, now=at(12)) is None


async def test_a_suspension_whose_time_has_passed_is_due_at_once(store: LibsqlStore) -> None:
    run = await store.suspend_run(suspension(wake_at=at(5), when=10))
    assert (run.state, run.wake_at) == ("running", at(5))
    woken = await store.wake_run(RUN, now=at(10))
    assert woken is not None
    assert (woken.attempt, woken.wakes) == (2, 1)


async def test_a_paused_suspension_is_never_due_at_once(store: LibsqlStore) -> None:
    await send(store, "approve", when=5)
    run = await store.suspend_run(suspension(waiting="approve", paused=True))
    assert (run.state, run.paused) == ("waiting", True)
    assert await store.wake_run(RUN, now=at(11)) is None


async def test_a_stale_suspension_changes_nothing(store: LibsqlStore) -> None:
    await store.suspend_run(suspension(wake_at=at(100)))
    woken = await store.wake_run(RUN, now=at(100))
    assert woken is not None
    late = await store.suspend_run(suspension(attempt=1, wake_at=at(900), when=110))
    assert late == woken


def test_due_is_the_wake_condition() -> None:
    def run(state: str, **fields: Any) -> RunRecord:
        values: dict[str, Any] = {
            "run_key": RUN,
            "task_id": TASK,
            "scheduled_at": FIRE,
            "state": state,
            "paused": False,
            "wake_at": None,
            "waiting": None,
            "consumed": 0,
            "attempt": 1,
            "wakes": 0,
            "parent_key": None,
            "spawn_key": None,
            "start_key": None,
            "reason": None,
            "created_at": FIRE,
            "updated_at": FIRE,
        }
        return RunRecord(**(values | fields))

    assert run("sleeping", wake_at=at(5)).due(at(5))
    assert not run("sleeping", wake_at=at(5)).due(at(4))
    assert not run("sleeping", wake_at=at(5), paused=True).due(at(9))
    assert run("sleeping").due(at(0))  # a paused suspension, resumed
    assert not run("waiting", waiting="go").due(at(0))
    assert run("waiting", waiting="go").due(at(0), available=True)
    assert run("waiting", waiting="go", wake_at=at(5)).due(at(5))
    assert not run("waiting", waiting="go", paused=True).due(at(0), available=True)
    for state in ("running", "succeeded", "failed", "cancelled"):
        assert not run(state, wake_at=at(0)).due(at(9), available=True)
    assert run("waiting").suspended
    assert not run("running").suspended


# ------------------------------------------------------------------ signals


async def test_signals_are_kept_in_order_with_their_payloads(store: LibsqlStore) -> None:
    first, run = await store.put_signal(
        signal("approve", {"by": "bob"}), task_id=TASK, scheduled_at=FIRE
    )
    assert (run.state, run.signals, run.created_at) == ("running", 1, at(5))  # row created
    assert (first.run_key, first.name, first.payload, first.sender) == (
        RUN,
        "approve",
        {"by": "bob"},
        "alice",
    )
    assert first.sent_at == at(5)
    assert first.size_bytes > 0
    second, _ = await store.put_signal(
        signal("note", [1, 2], when=6), task_id=TASK, scheduled_at=FIRE
    )
    third, run = await store.put_signal(signal("none"), task_id=TASK, scheduled_at=FIRE)
    assert first.seq < second.seq < third.seq
    assert run.signals == 3
    assert await store.run_signals(RUN) == (first, second, third)
    assert third.payload is None


async def test_a_signal_to_an_ended_run_is_refused_and_nothing_is_stored(
    store: LibsqlStore,
) -> None:
    await send(store)
    await store.finish_run(RUN, "succeeded", now=at(30))
    with pytest.raises(Conflict, match=rf"^run {RUN} is succeeded$"):
        await send(store, when=40)
    assert len(await store.run_signals(RUN)) == 1
    assert (await store.get_run(RUN)).signals == 1


async def test_an_inbox_holds_at_most_its_bound(store: LibsqlStore) -> None:
    await asyncio.gather(*(send(store, "tick", i) for i in range(MAX_INBOX_SIGNALS)))
    with pytest.raises(InvalidValue, match=rf"^inbox: run {RUN} holds {MAX_INBOX_SIGNALS}") as e:
        await send(store, "tick", "one too many")
    assert e.value.field == "inbox"
    signals = await store.run_signals(RUN)
    assert len(signals) == MAX_INBOX_SIGNALS
    assert sorted(s.payload for s in signals) == list(range(MAX_INBOX_SIGNALS))


async def test_an_oversize_or_unplain_payload_is_refused_and_stores_nothing(
    store: LibsqlStore,
) -> None:
    big = "x" * (store.settings.max_value_bytes + 1)
    with pytest.raises(InvalidValue, match=r"^payload: is \d+ bytes encoded, more than"):
        await send(store, payload=big)
    with pytest.raises(InvalidValue, match=r"^payload: cannot be stored as msgpack"):
        await send(store, payload={"when": object()})
    deep: Any = 1
    for _ in range(64):
        deep = [deep]
    with pytest.raises(InvalidValue, match=r"^payload: nests more than"):
        await send(store, payload=deep)
    with pytest.raises(NotFound):
        await store.get_run(RUN)  # not even the run's row
    assert await store.run_signals(RUN) == ()


async def test_a_signal_must_name_its_fire(store: LibsqlStore) -> None:
    with pytest.raises(InvalidValue, match=r"^run_key: .* is not the key of that fire"):
        await store.put_signal(signal(), task_id=TASK, scheduled_at=at(1))
    with pytest.raises(InvalidValue, match=r"^task_id:"):
        await store.put_signal(signal(), task_id="", scheduled_at=FIRE)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"run_key": ""}, "run_key"),
        ({"sender": 3}, "sender"),
        ({"sent_at": datetime(2024, 1, 1)}, "sent_at"),
    ],
)
def test_a_new_signal_checks_its_fields(fields: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"run_key": RUN, "name": "go", "sender": "", "sent_at": at(0)}
    with pytest.raises(InvalidValue) as caught:
        NewSignal(**(values | fields))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"run_key": "user.report@1"}, "run_key"),
        ({"attempt": 0}, "attempt"),
        ({"waiting": ""}, "waiting"),
        ({"consumed": -1}, "consumed"),
        ({"paused": 1}, "paused"),
        ({"wake_at": datetime(2024, 1, 1)}, "wake_at"),
    ],
)
def test_a_suspension_checks_its_fields(fields: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {
        "run_key": RUN,
        "task_id": TASK,
        "scheduled_at": FIRE,
        "attempt": 1,
        "wake_at": None,
        "waiting": None,
        "at": at(0),
    }
    with pytest.raises(InvalidValue) as caught:
        RunSuspension(**(values | fields))
    assert caught.value.field == field


async def test_payloads_are_encrypted_with_the_file(
    make_store: StoreFactory, data_dir: Path
) -> None:
    store = await make_store()
    await send(store, payload={"secret": "plain-text-marker-5821"})
    await store.close()
    stored = {path.name: path.read_bytes() for path in sorted(data_dir.iterdir())}  # noqa: ASYNC240
    assert "taskbus.db" in stored
    for name, content in stored.items():
        assert b"plain-text-marker-5821" not in content, name


# ------------------------------------------------------------------ control


async def test_cancel_ends_a_run_once(store: LibsqlStore) -> None:
    await store.suspend_run(suspension(wake_at=at(100)))
    run, before = await control(store, "cancel", reason="not needed")
    assert before == "sleeping"
    assert (run.state, run.wake_at, run.reason, run.updated_at) == (
        "cancelled",
        None,
        "not needed",
        at(20),
    )
    assert await store.wake_run(RUN, now=at(100)) is None
    again, before = await control(store, "cancel", reason="twice", when=30)
    assert (again, before) == (run, "cancelled")  # idempotent
    for action in ("pause", "resume"):
        with pytest.raises(Conflict, match=rf"^run {RUN} is cancelled$"):
            await control(store, action)
    # a late suspension of the cancelled run changes nothing
    assert await store.suspend_run(suspension(wake_at=at(200), when=40)) == run
    assert await store.finish_run(RUN, "succeeded", now=at(50)) == run


async def test_control_creates_the_row_of_a_run_that_has_none(store: LibsqlStore) -> None:
    run, before = await control(store, "cancel")
    assert (before, run.state, run.reason, run.created_at) == ("running", "cancelled", None, at(20))


async def test_a_paused_run_is_not_woken_until_resumed(store: LibsqlStore) -> None:
    paused, before = await control(store, "pause", reason="alice")
    assert (before, paused.state, paused.paused, paused.reason) == (
        "running",
        "running",
        True,
        "alice",
    )
    # the live attempt suspends at its next boundary: a paused suspension
    run = await store.suspend_run(suspension(paused=True))
    assert (run.state, run.paused, run.wake_at) == ("sleeping", True, None)
    assert await store.wake_run(RUN, now=at(1000)) is None
    resumed, before = await control(store, "resume", when=30)
    assert (before, resumed.paused) == ("sleeping", False)
    woken = await store.wake_run(RUN, now=at(31))
    assert woken is not None
    assert (woken.state, woken.attempt) == ("running", 2)


async def test_a_paused_sleeper_keeps_its_wake_time_but_is_held(store: LibsqlStore) -> None:
    await store.suspend_run(suspension(wake_at=at(100)))
    await control(store, "pause")
    assert await store.wake_run(RUN, now=at(200)) is None
    # a suspension of the paused run (its live attempt ended anyway) does not unpause it
    held = await store.suspend_run(suspension(wake_at=at(150), when=25))
    assert (held.state, held.paused, held.wake_at) == ("sleeping", True, at(150))
    assert await store.wake_run(RUN, now=at(200)) is None
    await control(store, "resume", when=30)
    assert (await store.wake_run(RUN, now=at(200))) is not None


async def test_control_checks_its_arguments(store: LibsqlStore) -> None:
    with pytest.raises(InvalidValue, match=r"^action: expected one of cancel, pause, resume"):
        await control(store, "stop")
    with pytest.raises(InvalidValue, match=r"^state: expected one of cancelled, failed"):
        await store.finish_run(RUN, "sleeping", now=at(0))


async def test_finish_ends_a_run_with_a_row(store: LibsqlStore) -> None:
    await store.suspend_run(suspension(wake_at=at(100)))
    failed = await store.finish_run(RUN, "failed", reason="gave up", now=at(30))
    assert failed is not None
    assert (failed.state, failed.reason, failed.wake_at, failed.updated_at) == (
        "failed",
        "gave up",
        None,
        at(30),
    )
    assert failed.final
    with pytest.raises(Conflict, match=rf"^run {RUN} is failed$"):
        await control(store, "cancel")


# ------------------------------------------------------------------ pages


async def test_runs_are_listed_in_key_order_by_page_task_state_and_owner(
    store: LibsqlStore,
) -> None:
    await store.put_task(
        TaskSpec(task_id="a.task", task_class="X", schedule="@daily", owner="ann"), now=at(0)
    )
    await store.put_task(
        TaskSpec(task_id="b.task", task_class="X", schedule="@daily", owner="bob"), now=at(0)
    )
    for index in range(3):
        await store.suspend_run(
            suspension(task_id="a.task", fire=at(index), wake_at=at(1000), when=10 + index)
        )
    await store.put_signal(
        NewSignal(run_key=run_key("b.task", at(0)), name="go", sender="", sent_at=at(5)),
        task_id="b.task",
        scheduled_at=at(0),
    )
    first = await store.list_runs(limit=2)
    assert [r.run_key for r in first.items] == [run_key("a.task", at(i)) for i in (0, 1)]
    assert first.next_cursor == run_key("a.task", at(1))
    rest = await store.list_runs(limit=2, after=first.next_cursor)
    assert [r.run_key for r in rest.items] == [run_key("a.task", at(2)), run_key("b.task", at(0))]
    assert rest.next_cursor is None
    assert rest.items[1].signals == 1
    bobs = await store.list_runs(owner="bob")
    assert [r.task_id for r in bobs.items] == ["b.task"]
    assert (await store.list_runs(owner="carol")).items == ()
    assert len((await store.list_runs(task_id="a.task")).items) == 3
    assert [r.task_id for r in (await store.list_runs(states=["running"])).items] == ["b.task"]
    assert len((await store.list_runs(states=["sleeping", "running"])).items) == 4
    with pytest.raises(InvalidValue, match=r"^states: 'asleep' is not one of"):
        await store.list_runs(states=["asleep"])
    with pytest.raises(InvalidValue, match=r"^limit:"):
        await store.list_runs(limit=0)


async def test_suspended_runs_are_every_sleeping_or_waiting_run(store: LibsqlStore) -> None:
    await store.suspend_run(suspension(fire=at(0), wake_at=at(1000)))
    await store.suspend_run(suspension(fire=at(1), waiting="go"))
    await store.suspend_run(suspension(fire=at(2), paused=True))
    await store.suspend_run(suspension(fire=at(3), wake_at=at(1000)))
    await store.finish_run(run_key(TASK, at(3)), "cancelled", now=at(20))
    await store.control_run(
        run_key(TASK, at(4)), task_id=TASK, scheduled_at=at(4), action="pause", now=at(20)
    )  # running, paused: not suspended
    first = await store.suspended_runs(after=None, limit=2)
    assert [r.state for r in first.items] == ["sleeping", "waiting"]
    rest = await store.suspended_runs(after=first.next_cursor, limit=2)
    assert [(r.run_key, r.paused) for r in rest.items] == [(run_key(TASK, at(2)), True)]
    assert rest.next_cursor is None


# ------------------------------------------------------------------ start keys


def fire(
    when: float, *, key: str | None = "order-1", task_id: str = TASK, retry: int = 0
) -> NewExecution:
    return NewExecution(
        task_id=task_id,
        scheduled_at=at(when),
        started_at=at(when),
        retry_count=retry,
        trigger="trigger" if retry == 0 else "retry",
        start_key=key,
    )


async def test_a_start_key_starts_one_run(store: LibsqlStore) -> None:
    (first,) = await store.record_fires([fire(0)], now=at(0))
    assert not first.duplicate
    run = await store.get_run(RUN)
    assert (run.state, run.start_key, run.attempt) == ("running", "order-1", 1)
    (again,) = await store.record_fires([fire(60)], now=at(60))
    assert again.duplicate
    assert again.record == first.record
    assert [e.scheduled_at for e in (await store.history(TASK)).items] == [at(0)]  # no new fire
    with pytest.raises(NotFound):
        await store.get_run(run_key(TASK, at(60)))
    # the latest attempt of the run answers, with its outcome
    (retry,) = await store.record_fires([fire(0, key=None, retry=1)], now=at(70))
    await store.finish_execution(
        retry.record.execution_id, ExecutionOutcome(completed_at=at(80), success=True)
    )
    (latest,) = await store.record_fires([fire(90)], now=at(90))
    assert latest.duplicate
    assert (latest.record.execution_id, latest.record.success) == (retry.record.execution_id, True)
    # another key, or another task, starts another run
    other, elsewhere = await store.record_fires(
        [fire(100, key="order-2"), fire(100, task_id="user.other")], now=at(100)
    )
    assert not other.duplicate
    assert not elsewhere.duplicate


async def test_a_start_key_repeated_in_one_batch_starts_one_run(store: LibsqlStore) -> None:
    plain, first, second, later = await store.record_fires(
        [fire(0, key=None, task_id="user.other"), fire(1), fire(2), fire(3, key="order-9")],
        now=at(5),
    )
    assert not plain.duplicate
    assert not first.duplicate
    assert not later.duplicate
    assert second.duplicate
    assert second.record.execution_id == first.record.execution_id
    assert [e.scheduled_at for e in (await store.history(TASK)).items] == [at(3), at(1)]


async def test_a_failed_record_of_fires_keeps_no_start_key(store: LibsqlStore) -> None:
    big = {"x": "y" * (store.settings.max_value_bytes + 1)}
    bad = NewExecution(
        task_id=TASK,
        scheduled_at=at(1),
        started_at=at(1),
        outcome=ExecutionOutcome(completed_at=at(2), success=True, result=big),
    )
    with pytest.raises(InvalidValue):
        await store.record_fires([fire(0), bad], now=at(0))
    assert (await store.list_runs()).items == ()
    (first,) = await store.record_fires([fire(0)], now=at(0))
    assert not first.duplicate


async def test_a_start_key_whose_run_kept_no_attempt_starts_a_new_run(
    store: LibsqlStore,
) -> None:
    await store.record_fires([fire(0)], now=at(0))
    report = await store.run_retention(now=at(1), max_executions=0)
    assert report.executions_over_cap == 1
    (again,) = await store.record_fires([fire(60)], now=at(60))
    assert not again.duplicate
    assert (await store.get_run(run_key(TASK, at(60)))).start_key == "order-1"
    assert (await store.get_run(RUN)).start_key is None


def test_a_start_key_is_printable_text_of_at_most_200_characters() -> None:
    for key in ("", "a\tb", "k" * 201):
        with pytest.raises(InvalidValue) as caught:
            fire(0, key=key)
        assert caught.value.field == "start_key"
    assert fire(0, key="k" * 200).start_key == "k" * 200


# ------------------------------------------------------------------ schema and retention


async def test_a_version_7_file_is_migrated_with_its_steps(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    version_7 = await make_store(master_key=key, migrations=MIGRATIONS[:7])
    await version_7.put_step(
        RUN, StepOutcome(name="collect", status="ok", result=1, started_at=at(0), finished_at=at(1))
    )
    await version_7.close()
    store = await make_store(master_key=key)
    assert [m.version for m in store.applied] == [8, 9, 10]
    assert [s.name for s in await store.run_steps(RUN)] == ["collect"]
    await send(store)
    assert (await store.get_run(RUN)).signals == 1
    assert await store.integrity_check() == ["ok"]
    await store.close()
    assert raw_rows(db_path, key, "SELECT count(*) FROM runs") == [(1,)]


@pytest.fixture
def key() -> MasterKey:
    return MasterKey.generate("test")


async def test_retention_deletes_ended_runs_and_keeps_the_steps_of_live_ones(
    store: LibsqlStore,
) -> None:
    day = 86_400
    step = StepOutcome(name="collect", status="ok", result=1, started_at=at(0), finished_at=at(1))
    ended, sleeping, recent = (run_key(TASK, at(n)) for n in (0, 1, 2))
    # ended long ago, with signals and a step: deleted, all of it
    await send(store)
    await store.put_step(ended, step)
    await store.finish_run(ended, "succeeded", now=at(10))
    # asleep for weeks, with no execution kept: kept, and its steps with it
    await store.suspend_run(suspension(fire=at(1), wake_at=at(90 * day)))
    await store.put_step(sleeping, step)
    # ended recently: kept
    await store.suspend_run(suspension(fire=at(2), wake_at=at(90 * day)))
    await store.finish_run(recent, "cancelled", now=at(40 * day))
    report = await store.run_retention(now=at(41 * day), retention_days=30)
    assert report.runs_deleted == 1
    assert report.steps_deleted == 1
    with pytest.raises(NotFound):
        await store.get_run(ended)
    assert await store.run_signals(ended) == ()
    assert await store.run_steps(ended) == ()
    assert [s.name for s in await store.run_steps(sleeping)] == ["collect"]
    assert (await store.get_run(sleeping)).state == "sleeping"
    assert (await store.get_run(recent)).state == "cancelled"


async def test_the_integrity_check_reads_runs_and_inboxes(store: LibsqlStore) -> None:
    await send(store, payload={"a": [1, 2]})
    await store.suspend_run(suspension(fire=at(1), wake_at=at(100)))
    assert await store.integrity_check() == ["ok"]


# ------------------------------------------------------------------ wave 2: the run tree


async def test_a_version_8_file_is_migrated_with_its_runs(
    make_store: StoreFactory, db_path: Path, key: MasterKey
) -> None:
    version_8 = await make_store(master_key=key, migrations=MIGRATIONS[:8])
    await version_8.close()
    connection = libsql.connect(str(db_path), encryption_key=key.database_key().secret)
    connection.execute(
        "INSERT INTO runs (run_key, task_id, scheduled_at, state, wake_at, attempt, "
        "created_at, updated_at) VALUES (?, ?, ?, 'sleeping', ?, 2, ?, ?)",
        (RUN, TASK, to_us(FIRE), to_us(at(100)), to_us(at(1)), to_us(at(2))),
    )
    connection.execute(
        "INSERT INTO run_inbox (run_key, name, payload, sender, sent_at, size_bytes) "
        "VALUES (?, 'approve', NULL, 'alice', ?, 0)",
        (RUN, to_us(at(1))),
    )
    connection.commit()
    connection.close()
    store = await make_store(master_key=key)
    assert [m.version for m in store.applied] == [9, 10]
    run = await store.get_run(RUN)
    assert (run.state, run.signals, run.wake_at, run.attempt) == ("sleeping", 1, at(100), 2)
    assert (run.on_parent_cancel, run.answers, run.parent_key) == ("cancel", None, None)
    assert await store.run_children(RUN) == ()
    assert await store.integrity_check() == ["ok"]
    await store.close()
    indexes = raw_rows(
        db_path, key, "SELECT name FROM sqlite_master WHERE type = 'index' AND name = 'runs_parent'"
    )
    assert indexes == [("runs_parent",)]


def succeeded(when: float, result: dict[str, Any] | None = None) -> ExecutionOutcome:
    return ExecutionOutcome(completed_at=at(when), success=True, result=result)


async def test_a_successful_finish_closes_the_runs_row(store: LibsqlStore) -> None:
    (started,) = await store.record_fires([fire(0)], now=at(0))
    assert (await store.get_run(RUN)).state == "running"
    finished = await store.finish_execution(started.record.execution_id, succeeded(5, {"n": 1}))
    assert not finished.duplicate
    run = await store.get_run(RUN)
    assert (run.state, run.updated_at, run.final) == ("succeeded", at(5), True)


async def test_a_suspended_or_failed_finish_leaves_the_row_open(store: LibsqlStore) -> None:
    (started,) = await store.record_fires([fire(0)], now=at(0))
    await store.suspend_run(suspension(wake_at=at(100), when=4))
    suspended = succeeded(5, {"suspended": {"wake_at": at(100).isoformat(), "waiting": None}})
    await store.finish_execution(started.record.execution_id, suspended)
    assert (await store.get_run(RUN)).state == "sleeping"
    woken = await store.wake_run(RUN, now=at(100))
    assert woken is not None
    (second,) = await store.record_fires(
        [NewExecution(task_id=TASK, scheduled_at=FIRE, started_at=at(100), retry_count=1)],
        now=at(100),
    )
    failure = ExecutionOutcome(completed_at=at(101), success=False, error_message="boom")
    await store.finish_execution(second.record.execution_id, failure)
    assert (await store.get_run(RUN)).state == "running"


async def test_a_batch_of_finishes_closes_rows_and_never_reopens_an_ended_one(
    store: LibsqlStore,
) -> None:
    other = run_key(TASK, at(1))
    started = await store.record_fires([fire(0), fire(1, key="order-2")], now=at(1))
    await store.control_run(
        other, task_id=TASK, scheduled_at=at(1), action="cancel", reason="no", now=at(2)
    )
    results = await store.finish_executions(
        [
            (started[0].record.execution_id, succeeded(5)),
            (started[1].record.execution_id, succeeded(5)),
        ]
    )
    assert all(not isinstance(r, Exception) for r in results)
    assert (await store.get_run(RUN)).state == "succeeded"
    assert (await store.get_run(other)).state == "cancelled"


async def test_a_successful_run_without_a_row_gets_none(store: LibsqlStore) -> None:
    (started,) = await store.record_fires([fire(0, key=None)], now=at(0))
    await store.finish_execution(started.record.execution_id, succeeded(5))
    with pytest.raises(NotFound):
        await store.get_run(RUN)


def child(
    when: float, spawn: str, *, parent: str = RUN, on_parent_cancel: str = "cancel"
) -> NewExecution:
    return NewExecution(
        task_id="user.child-" + spawn,
        scheduled_at=at(when),
        started_at=at(when),
        trigger="trigger",
        start_key="spawn",
        parent_key=parent,
        spawn_key=spawn,
        on_parent_cancel=on_parent_cancel,
    )


async def test_children_are_listed_by_their_parent(store: LibsqlStore) -> None:
    await store.record_fires(
        [child(1, "b", on_parent_cancel="abandon"), child(2, "a"), child(3, "z", parent="other@1")],
        now=at(3),
    )
    children = await store.run_children(RUN)
    assert [(c.task_id, c.spawn_key, c.on_parent_cancel) for c in children] == [
        ("user.child-a", "a", "cancel"),
        ("user.child-b", "b", "abandon"),
    ]
    assert all((c.parent_key, c.state, c.start_key) == (RUN, "running", "spawn") for c in children)
    # spawned again (the same fire, same start key): one run, still the parent's only
    (again,) = await store.record_fires([child(60, "a")], now=at(60))
    assert again.duplicate
    assert len(await store.run_children(RUN)) == 2
    assert await store.run_children("nobody@1") == ()


def test_a_child_fire_checks_its_fields() -> None:
    with pytest.raises(InvalidValue) as caught:
        child(0, "a", on_parent_cancel="ignore")
    assert caught.value.field == "on_parent_cancel"
    with pytest.raises(InvalidValue) as caught:
        NewExecution(task_id=TASK, scheduled_at=at(0), started_at=at(0), spawn_key="a\nb")
    assert caught.value.field == "spawn_key"
    with pytest.raises(InvalidValue) as caught:
        child(0, "a", parent="")
    assert caught.value.field == "parent_key"


async def test_the_latest_attempt_of_a_run(store: LibsqlStore) -> None:
    assert await store.latest_attempt(TASK, FIRE) is None
    (first,) = await store.record_fires([fire(0, key=None)], now=at(0))
    (retry,) = await store.record_fires([fire(0, key=None, retry=1)], now=at(5))
    latest = await store.latest_attempt(TASK, FIRE)
    assert latest is not None
    assert latest.execution_id == retry.record.execution_id != first.record.execution_id
    assert await store.latest_attempt(TASK, at(1)) is None


async def test_stranded_runs_are_woken_runs_whose_fire_was_never_recorded(
    store: LibsqlStore,
) -> None:
    # a run woken (attempt 2) whose wake's fire was never recorded: stranded
    await store.record_fires([fire(0)], now=at(0))
    await store.suspend_run(suspension(wake_at=at(10), when=5))
    await store.wake_run(RUN, now=at(10))
    # a woken run whose fire was recorded: not stranded
    other = run_key(TASK, at(1))
    await store.record_fires([fire(1, key="order-2")], now=at(1))
    await store.suspend_run(suspension(fire=at(1), wake_at=at(10), when=5))
    await store.wake_run(other, now=at(10))
    await store.record_fires([fire(1, key=None, retry=1)], now=at(10))
    # a running row whose first attempt is kept, and a sleeping one: not stranded
    await store.record_fires([fire(2, key="order-3")], now=at(2))
    await store.suspend_run(suspension(fire=at(3), wake_at=at(100), when=5))
    page = await store.stranded_runs()
    assert [(r.run_key, r.attempt, r.wakes) for r in page.items] == [(RUN, 2, 1)]
    assert page.next_cursor is None
    # paged in run key order
    third = run_key(TASK, at(4))
    await store.suspend_run(suspension(fire=at(4), wake_at=at(10), when=5))
    await store.wake_run(third, now=at(10))
    first_page = await store.stranded_runs(limit=1)
    assert [r.run_key for r in first_page.items] == [RUN]
    assert first_page.next_cursor is not None
    rest = await store.stranded_runs(after=first_page.next_cursor, limit=1)
    assert [r.run_key for r in rest.items] == [third]
    with pytest.raises(InvalidValue):
        await store.stranded_runs(limit=0)


async def test_an_inbox_holds_at_most_its_bound_in_bytes(store: LibsqlStore) -> None:
    payload = "x" * (store.settings.max_value_bytes - 100)
    sent = 0
    refused: InvalidValue | None = None
    while refused is None:
        try:
            await send(store, "big", payload)
        except InvalidValue as exc:
            refused = exc
        else:
            sent += 1
    assert refused.field == "inbox"
    assert f"over the {MAX_INBOX_BYTES} bytes an inbox may hold" in str(refused)
    signals = await store.run_signals(RUN)
    assert len(signals) == sent
    held = sum(s.size_bytes for s in signals)
    assert held <= MAX_INBOX_BYTES < held + signals[0].size_bytes
    # a small one still fits, if room is left for it
    room = MAX_INBOX_BYTES - held
    if room > 100:
        await send(store, "small", "y")
        assert len(await store.run_signals(RUN)) == sent + 1


async def test_answers_are_stored_with_suspensions_and_finishes(store: LibsqlStore) -> None:
    answers = {"progress": {"done": 3, "of": 10}, "stage": "collect"}
    slept = await store.suspend_run(
        RunSuspension(
            run_key=RUN,
            task_id=TASK,
            scheduled_at=FIRE,
            attempt=1,
            wake_at=at(100),
            waiting=None,
            at=at(10),
            answers=answers,
        )
    )
    assert slept.answers == answers
    assert (await store.get_run(RUN)).answers == answers
    # a suspension without answers keeps those stored
    await store.wake_run(RUN, now=at(100))
    await store.suspend_run(suspension(attempt=2, wake_at=at(200), when=150))
    assert (await store.get_run(RUN)).answers == answers
    # the finish stores its own
    done = await store.finish_run(RUN, "succeeded", now=at(300), answers={"stage": "done"})
    assert done is not None
    assert (done.state, done.answers) == ("succeeded", {"stage": "done"})
    # a finish without answers keeps them; an ended run still takes answers
    await store.finish_run(RUN, "succeeded", now=at(301))
    assert (await store.get_run(RUN)).answers == {"stage": "done"}
    late = await store.finish_run(RUN, "succeeded", now=at(302), answers={"stage": "later"})
    assert late is not None
    assert (late.state, late.answers) == ("succeeded", {"stage": "later"})
    # no row: nothing
    assert await store.finish_run(run_key(TASK, at(9)), "succeeded", now=at(1), answers={}) is None


async def test_answers_that_cannot_be_stored_are_refused_and_store_nothing(
    store: LibsqlStore,
) -> None:
    big = {"stage": "x" * store.settings.max_value_bytes}
    with pytest.raises(InvalidValue, match=r"^answers: is \d+ bytes encoded, more than"):
        await store.suspend_run(
            RunSuspension(
                run_key=RUN,
                task_id=TASK,
                scheduled_at=FIRE,
                attempt=1,
                wake_at=None,
                waiting=None,
                at=at(10),
                answers=big,
            )
        )
    with pytest.raises(NotFound):
        await store.get_run(RUN)
    await store.suspend_run(suspension(wake_at=at(100)))
    with pytest.raises(InvalidValue, match=r"^answers: cannot be stored as msgpack"):
        await store.finish_run(RUN, "succeeded", now=at(20), answers={"when": object()})
    with pytest.raises(InvalidValue) as caught:
        await store.finish_run(RUN, "succeeded", now=at(20), answers=["not", "a", "map"])  # type: ignore[arg-type]
    assert caught.value.field == "answers"
    with pytest.raises(InvalidValue) as caught:
        await store.finish_run(RUN, "succeeded", now=at(20), answers={"": 1})
    assert caught.value.field == "answers key"
    run = await store.get_run(RUN)
    assert (run.state, run.answers) == ("sleeping", None)
