"""The ``store.run.*`` topics on a real store actor over a real bus and encrypted file: a run
suspended, woken once, signalled, cancelled, paused and resumed, listed and finished, and a start
recorded once per key, read back as the store's records by the typed client; bad input refused
with ``invalid`` naming the field, having stored nothing; the default ACL lets executors and the
scheduler ask them, and nobody else, and lets only schedulers push to a run. Wave 2: child runs
recorded and listed, the latest attempt of a run, stranded runs, answers to queries stored with
suspensions and finishes, a run closed by its successful finish, inboxes bounded in bytes, and
``scheduler.exec.`` asked only by executors (and admins).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem
from actors.storing import StoreActor
from actors.storing.client import StoreClient
from bus import RemoteError
from bus.acl import Acl, Roles
from config import BusSettings, topics
from config.actors import ActorSettings
from config.bus import default_acl, default_roles
from store import MAX_INBOX_BYTES, LibsqlStore
from store.errors import Conflict, InvalidValue, NotFound
from store.records import NewExecution, NewSignal, RunSuspension, run_key
from tests.actors.kit import spawn_instance
from tests.store.conftest import at
from tests.storing.test_actor import Served

TASK = "user.report"
RUN = run_key(TASK, at(0))
FIRE = {"run_key": RUN, "task_id": TASK, "scheduled_at": at(0).isoformat()}
SECRET = "a-signal-payload-that-must-not-be-on-disk"
STORE_RUN_TOPICS = (
    topics.STORE_RUN_SUSPEND,
    topics.STORE_RUN_WAKE,
    topics.STORE_RUN_SIGNAL_PUT,
    topics.STORE_RUN_SIGNAL_LIST,
    topics.STORE_RUN_CONTROL,
    topics.STORE_RUN_GET,
    topics.STORE_RUN_LIST,
    topics.STORE_RUN_SUSPENDED,
    topics.STORE_RUN_FINISH,
    topics.STORE_RUN_ATTEMPT,
    topics.STORE_RUN_CHILDREN,
    topics.STORE_RUN_STRANDED,
)


async def put_task(served: Served, task_id: str = TASK, owner: str = "bob") -> None:
    await served.ask(
        "store.task.put", task_id=task_id, task_class="tasks.Report", schedule="@daily", owner=owner
    )


def signal(name: Any = "approve", payload: Any = None, **fields: Any) -> dict[str, Any]:
    return (
        FIRE
        | {
            "name": name,
            "payload": payload,
            "sender": "bob",
            "sent_at": at(1).isoformat(),
        }
        | fields
    )


# ------------------------------------------------------------------ the topics


def test_the_topics_are_named_once() -> None:
    assert all(topic.startswith(topics.STORE_RUNS) for topic in STORE_RUN_TOPICS)
    assert len(set(STORE_RUN_TOPICS)) == 12
    assert topics.STORE_RUNS == "store.run."
    assert topics.RUN_DELIVER == "scheduler.run.deliver."
    public = (topics.RUN_SIGNAL, topics.RUN_CANCEL, topics.RUN_PAUSE, topics.RUN_RESUME)
    assert all(topic.startswith(topics.RUN) for topic in (*public, topics.RUN_LIST))
    assert (topics.RUN_TREE, topics.RUN_QUERY) == ("scheduler.run.tree", "scheduler.run.query")
    assert topics.EXEC == "scheduler.exec."
    assert (topics.EXEC_SPAWN, topics.EXEC_ANSWER) == (
        "scheduler.exec.spawn",
        "scheduler.exec.answer",
    )
    assert (topics.STORE_RUN_ATTEMPT, topics.STORE_RUN_CHILDREN, topics.STORE_RUN_STRANDED) == (
        "store.run.attempt",
        "store.run.children",
        "store.run.stranded",
    )


async def test_a_run_sleeps_and_is_woken_once_on_the_store_s_clock(served: Served) -> None:
    await put_task(served)
    slept = await served.ask("store.run.suspend", **FIRE, attempt=1, wake_at=at(60).isoformat())
    run = slept["run"]
    assert (run["run_key"], run["state"], run["wake_at"], run["attempt"]) == (
        RUN,
        "sleeping",
        at(60).isoformat(),
        1,
    )
    assert (run["paused"], run["waiting"], run["wakes"], run["signals"]) == (False, None, 0, 0)
    assert await served.ask("store.run.wake", run_key=RUN) == {"run": None}  # not due yet
    served.clock.advance(60)
    woken = (await served.ask("store.run.wake", run_key=RUN))["run"]
    assert (woken["state"], woken["attempt"], woken["wakes"]) == ("running", 2, 1)
    assert await served.ask("store.run.wake", run_key=RUN) == {"run": None}  # one wake wins
    got = (await served.ask("store.run.get", run_key=RUN))["run"]
    assert (got["state"], got["attempt"], got["wakes"]) == ("running", 2, 1)
    assert await served.ask("store.run.wake", run_key=f"{TASK}@7") == {"run": None}


async def test_a_suspension_already_due_on_the_store_s_clock_comes_back_running(
    served: Served,
) -> None:
    await put_task(served)
    served.clock.advance(120)  # the requester's idea of now is not asked for
    slept = await served.ask("store.run.suspend", **FIRE, attempt=1, wake_at=at(60).isoformat())
    assert slept["run"]["state"] == "running"  # the lost wakeup: wake it now


async def test_signals_are_kept_in_order_and_wake_a_run_waiting_for_them(served: Served) -> None:
    await put_task(served)
    waiting = await served.ask("store.run.suspend", **FIRE, attempt=1, waiting="approve")
    assert (waiting["run"]["state"], waiting["run"]["waiting"]) == ("waiting", "approve")
    first = await served.ask("store.run.signal.put", **signal("note", [1, "two"]))
    second = await served.ask("store.run.signal.put", **signal(payload={"ok": True}))
    assert first["signal"]["seq"] < second["signal"]["seq"]
    assert (second["signal"]["name"], second["signal"]["payload"]) == ("approve", {"ok": True})
    assert (second["signal"]["sender"], second["signal"]["sent_at"]) == ("bob", at(1).isoformat())
    assert second["signal"]["size_bytes"] > 0
    assert (second["run"]["state"], second["run"]["signals"]) == ("waiting", 2)  # caller wakes
    listed = await served.ask("store.run.signal.list", run_key=RUN)
    assert listed["signals"] == [first["signal"], second["signal"]]
    woken = (await served.ask("store.run.wake", run_key=RUN))["run"]
    assert (woken["state"], woken["wakes"]) == ("running", 1)
    assert (await served.ask("store.run.signal.list", run_key=f"{TASK}@7"))["signals"] == []


async def test_control_pauses_resumes_and_cancels_a_run_once(served: Served) -> None:
    await put_task(served)
    paused = await served.ask("store.run.control", **FIRE, action="pause", reason="bob")
    assert (paused["run"]["state"], paused["run"]["paused"]) == ("running", True)
    resumed = await served.ask("store.run.control", **FIRE, action="resume")
    assert (resumed["run"]["paused"], resumed["before"]) == (False, "running")
    cancelled = await served.ask("store.run.control", **FIRE, action="cancel", reason="enough")
    assert (cancelled["run"]["state"], cancelled["run"]["reason"]) == ("cancelled", "enough")
    assert cancelled["before"] == "running"
    again = await served.ask("store.run.control", **FIRE, action="cancel", reason="twice")
    assert (again["run"], again["before"]) == (cancelled["run"], "cancelled")  # idempotent
    refusal = await served.refused("store.run.control", **FIRE, action="pause")
    assert (refusal.code, refusal.reason) == ("conflict", f"run {RUN} is cancelled")
    refusal = await served.refused("store.run.signal.put", **signal())
    assert (refusal.code, refusal.reason) == ("conflict", f"run {RUN} is cancelled")
    assert (await served.ask("store.run.signal.list", run_key=RUN))["signals"] == []


async def test_runs_are_listed_by_task_state_and_owner_and_paged(served: Served) -> None:
    await put_task(served)
    await put_task(served, "user.other", owner="carol")
    keys = [run_key(TASK, at(i)) for i in range(3)]
    for i, key in enumerate(keys):
        scheduled = at(i).isoformat()
        fire = {"run_key": key, "task_id": TASK, "scheduled_at": scheduled}
        await served.ask("store.run.suspend", **fire, attempt=1, wake_at=at(600).isoformat())
    other = run_key("user.other", at(0))
    other_fire = {"run_key": other, "task_id": "user.other", "scheduled_at": at(0).isoformat()}
    await served.ask("store.run.control", **other_fire, action="cancel")
    everything = await served.ask("store.run.list")
    assert [r["run_key"] for r in everything["runs"]] == sorted([*keys, other])
    assert everything["next_cursor"] is None
    first = await served.ask("store.run.list", task_id=TASK, limit=2)
    assert [r["run_key"] for r in first["runs"]] == sorted(keys)[:2]
    rest = await served.ask("store.run.list", task_id=TASK, after=first["next_cursor"])
    assert [r["run_key"] for r in rest["runs"]] == sorted(keys)[2:]
    cancelled = await served.ask("store.run.list", states=["cancelled"])
    assert [r["run_key"] for r in cancelled["runs"]] == [other]
    both = await served.ask("store.run.list", states=["cancelled", "sleeping"], owner="carol")
    assert [r["run_key"] for r in both["runs"]] == [other]
    suspended = await served.ask("store.run.suspended", limit=2)
    assert [r["run_key"] for r in suspended["runs"]] == sorted(keys)[:2]
    more = await served.ask("store.run.suspended", after=suspended["next_cursor"], limit=2)
    assert ([r["run_key"] for r in more["runs"]], more["next_cursor"]) == (sorted(keys)[2:], None)


async def test_a_run_finishes_once_and_only_if_it_has_a_row(served: Served) -> None:
    await put_task(served)
    assert await served.ask("store.run.finish", run_key=RUN, state="succeeded") == {"run": None}
    await served.ask("store.run.signal.put", **signal())
    finished = await served.ask("store.run.finish", run_key=RUN, state="failed", reason="gave up")
    assert (finished["run"]["state"], finished["run"]["reason"]) == ("failed", "gave up")
    refusal = await served.refused("store.run.signal.put", **signal())
    assert (refusal.code, refusal.reason) == ("conflict", f"run {RUN} is failed")


# ------------------------------------------------------------------ start keys


async def test_a_start_key_records_one_fire_and_answers_the_same_execution(
    served: Served,
) -> None:
    await put_task(served)

    def start(seconds: float, key: str = "order-42") -> dict[str, Any]:
        return {
            "task_id": TASK,
            "scheduled_at": at(seconds).isoformat(),
            "started_at": at(seconds).isoformat(),
            "trigger": "trigger",
            "start_key": key,
        }

    first = (await served.ask("store.execution.record_many", executions=[start(0)]))["executions"]
    again = (await served.ask("store.execution.record_many", executions=[start(5)]))["executions"]
    assert first[0]["duplicate"] is False
    assert (again[0]["execution_id"], again[0]["duplicate"]) == (first[0]["execution_id"], True)
    run = (await served.ask("store.run.get", run_key=RUN))["run"]
    assert (run["start_key"], run["state"]) == ("order-42", "running")
    other = await served.ask("store.execution.record_many", executions=[start(5, "order-43")])
    assert other["executions"][0]["duplicate"] is False
    history = await served.ask("store.execution.history", task_id=TASK)
    assert len(history["executions"]) == 2


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "executions[0].start_key: must not be empty"),
        (7, "executions[0].start_key: expected a string, got int"),
        ("a\nb", "executions[0].start_key: must be printable"),
        ("k" * 201, "executions[0].start_key: is 201 characters long, more than 200"),
    ],
)
async def test_a_bad_start_key_is_refused_and_records_nothing(
    served: Served, key: Any, reason: str
) -> None:
    await put_task(served)
    fire = {"task_id": TASK, "scheduled_at": at(0).isoformat(), "started_at": at(0).isoformat()}
    refusal = await served.refused(
        "store.execution.record_many", executions=[fire | {"start_key": key}]
    )
    assert refusal.code == "invalid"
    assert refusal.reason.startswith(reason), refusal.reason
    assert (await served.ask("store.execution.history", task_id=TASK))["executions"] == []
    assert (await served.refused("store.run.get", run_key=RUN)).code == "not_found"


async def test_a_single_record_takes_no_start_key(served: Served) -> None:
    fire = {"task_id": TASK, "scheduled_at": at(0).isoformat(), "started_at": at(0).isoformat()}
    refusal = await served.refused("store.execution.record", **fire, start_key="k")
    assert (refusal.code, refusal.reason) == (
        "invalid",
        "start_key: is not a field of this request",
    )


# ------------------------------------------------------------------ the typed client


async def test_the_client_speaks_every_run_topic_with_the_store_s_records(
    served: Served, store: StoreClient
) -> None:
    await put_task(served)
    suspension = RunSuspension(
        run_key=RUN,
        task_id=TASK,
        scheduled_at=at(0),
        attempt=1,
        wake_at=None,
        waiting="approve",
        at=at(-3600),  # not sent: the store actor's clock judges the suspension
    )
    suspended = await store.suspend_run(suspension)
    assert (suspended.state, suspended.waiting, suspended.suspended) == ("waiting", "approve", True)
    assert suspended == await served.actor.store.get_run(RUN)
    new = NewSignal(run_key=RUN, name="approve", payload=SECRET, sender="bob", sent_at=at(1))
    kept, run = await store.put_signal(new, task_id=TASK, scheduled_at=at(0))
    assert (kept.name, kept.payload, kept.sender, kept.sent_at) == ("approve", SECRET, "bob", at(1))
    assert (run.state, run.signals) == ("waiting", 1)
    assert await store.run_signals(RUN) == (kept,)
    woken = await store.wake_run(RUN, now=at(-7200))  # the store's clock decides, not this
    assert woken is not None
    assert (woken.state, woken.wakes, woken.attempt) == ("running", 1, 2)
    assert await store.wake_run(RUN) is None
    assert await store.get_run(RUN) == dataclasses.replace(woken, signals=1)
    page = await store.list_runs(task_id=TASK, states=("running",), owner="bob")
    assert [r.run_key for r in page.items] == [RUN]
    assert (await store.list_runs(owner="carol")).items == ()
    assert (await store.suspended_runs(after=None, limit=10)).items == ()
    paused, before = await store.control_run(
        RUN, task_id=TASK, scheduled_at=at(0), action="pause", reason="bob", now=at(0)
    )
    assert (paused.paused, before) == (True, "running")
    finished = await store.finish_run(RUN, "succeeded", reason=None, now=at(0))
    assert finished is not None
    assert finished.state == "succeeded"
    assert await store.finish_run(run_key(TASK, at(9)), "failed", reason="gone") is None

    with pytest.raises(NotFound):
        await store.get_run(run_key(TASK, at(9)))
    with pytest.raises(Conflict, match=f"run {RUN} is succeeded"):
        await store.put_signal(new, task_id=TASK, scheduled_at=at(0))
    with pytest.raises(InvalidValue) as bad:
        await store.finish_run(RUN, "sleeping")
    assert bad.value.field == "state"
    with pytest.raises(InvalidValue) as bad:
        await store.control_run(RUN, task_id=TASK, scheduled_at=at(0), action="stop")
    assert bad.value.field == "action"


async def test_the_client_records_a_start_once(served: Served, store: StoreClient) -> None:
    await put_task(served)
    news = [
        NewExecution(
            task_id=TASK, scheduled_at=at(i), started_at=at(i), trigger="trigger", start_key="k"
        )
        for i in range(2)
    ]
    first = await store.record_fires(news[:1])
    again = await store.record_fires(news[1:])
    assert (again[0].execution_id, again[0].duplicate) == (first[0].execution_id, True)
    assert again[0].success is None
    assert (await store.get_run(RUN)).start_key == "k"
    single = NewExecution(task_id=TASK, scheduled_at=at(9), started_at=at(9), start_key="k")
    recorded = await store.record_execution(single)  # as the store's: only fires take a key
    assert not recorded.duplicate
    with pytest.raises(NotFound):
        await store.get_run(run_key(TASK, at(9)))


async def test_signal_payloads_are_encrypted_on_disk(
    served: Served, store: StoreClient, db_path: Path
) -> None:
    await put_task(served)
    new = NewSignal(run_key=RUN, name="note", payload={"text": SECRET}, sender="bob", sent_at=at(1))
    await store.put_signal(new, task_id=TASK, scheduled_at=at(0))
    assert (await store.run_signals(RUN))[0].payload == {"text": SECRET}
    for path in db_path.parent.iterdir():
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path.name


# ------------------------------------------------------------------ bad input


BAD: list[Any] = [
    # store.run.suspend
    (topics.STORE_RUN_SUSPEND, FIRE | {"attempt": 1, "run_key": None}, "run_key: is required"),
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "run_key": f"{TASK}@1"},
        "run_key: 'user.report@1' is not the key of that fire",
    ),
    (topics.STORE_RUN_SUSPEND, FIRE, "attempt: is required"),
    (topics.STORE_RUN_SUSPEND, FIRE | {"attempt": 0}, "attempt: 0 is outside 1.."),
    (topics.STORE_RUN_SUSPEND, FIRE | {"attempt": "1"}, "attempt: expected an integer, got str"),
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "wake_at": "2024-05-01T12:00:00"},
        "wake_at: '2024-05-01T12:00:00' has no UTC offset",
    ),
    (topics.STORE_RUN_SUSPEND, FIRE | {"attempt": 1, "waiting": ""}, "waiting: must not be empty"),
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "waiting": "w" * 101},
        "waiting: is 101 characters long, more than 100",
    ),
    (topics.STORE_RUN_SUSPEND, FIRE | {"attempt": 1, "consumed": -1}, "consumed: -1 is outside"),
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "paused": 1},
        "paused: expected true or false, got int",
    ),
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "at": at(0).isoformat()},
        "at: is not a field of this request",
    ),
    (
        topics.STORE_RUN_SUSPEND,
        {"run_key": RUN, "scheduled_at": at(0).isoformat(), "attempt": 1},
        "task_id: is required",
    ),
    # store.run.wake, .get, .signal.list
    (topics.STORE_RUN_WAKE, {}, "run_key: is required"),
    (topics.STORE_RUN_WAKE, {"run_key": RUN, "now": at(0).isoformat()}, "now: is not a field"),
    (topics.STORE_RUN_GET, {"run_key": 7}, "run_key: expected a string, got int"),
    (topics.STORE_RUN_SIGNAL_LIST, {"run_key": "a\nb"}, "run_key: must be printable"),
    (topics.STORE_RUN_SIGNAL_LIST, {"run_key": RUN, "limit": 3}, "limit: is not a field"),
    # store.run.signal.put
    (topics.STORE_RUN_SIGNAL_PUT, signal(name=""), "name: must not be empty"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(name=3), "name: expected a string, got int"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(name="n" * 101), "name: is 101 characters long"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(name="a\tb"), "name: must be printable"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(sender=None), "sender: is required"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(sent_at="soon"), "sent_at: 'soon' is not an ISO 8601"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(payload="x" * (64 * 1024 + 1)), "payload: is 65"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(run_key=f"{TASK}@2"), "run_key: 'user.report@2' is"),
    (topics.STORE_RUN_SIGNAL_PUT, signal(seq=1), "seq: is not a field of this request"),
    # store.run.control
    (topics.STORE_RUN_CONTROL, FIRE, "action: is required"),
    (
        topics.STORE_RUN_CONTROL,
        FIRE | {"action": "stop"},
        "action: expected one of cancel, pause, resume, got 'stop'",
    ),
    (topics.STORE_RUN_CONTROL, FIRE | {"action": 1}, "action: expected a string, got int"),
    (
        topics.STORE_RUN_CONTROL,
        FIRE | {"action": "cancel", "reason": 5},
        "reason: expected a string, got int",
    ),
    (
        topics.STORE_RUN_CONTROL,
        FIRE | {"action": "cancel", "scheduled_at": 5},
        "scheduled_at: expected ISO 8601 text, got int",
    ),
    # store.run.list, .suspended
    (topics.STORE_RUN_LIST, {"states": "sleeping"}, "states: expected a list, got str"),
    (
        topics.STORE_RUN_LIST,
        {"states": ["sleeping", "dozing"]},
        "states[1]: expected one of running, sleeping, waiting, succeeded, failed, cancelled",
    ),
    (topics.STORE_RUN_LIST, {"states": ["running"] * 7}, "states: has 7 entries, expected 0..6"),
    (topics.STORE_RUN_LIST, {"limit": 0}, "limit: 0 is outside 1.."),
    (topics.STORE_RUN_LIST, {"task_id": ""}, "task_id: must not be empty"),
    (topics.STORE_RUN_LIST, {"owner": 3}, "owner: expected a string, got int"),
    (topics.STORE_RUN_LIST, {"state": "running"}, "state: is not a field of this request"),
    (topics.STORE_RUN_SUSPENDED, {"limit": "5"}, "limit: expected an integer, got str"),
    (topics.STORE_RUN_SUSPENDED, {"task_id": TASK}, "task_id: is not a field of this request"),
    # store.run.finish
    (topics.STORE_RUN_FINISH, {"run_key": RUN}, "state: is required"),
    (
        topics.STORE_RUN_FINISH,
        {"run_key": RUN, "state": "running"},
        "state: expected one of cancelled, failed, succeeded, got 'running'",
    ),
    (
        topics.STORE_RUN_FINISH,
        {"run_key": RUN, "state": "failed", "reason": ["x"]},
        "reason: expected a string, got list",
    ),
    # answers, with a suspension or a finish
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "answers": ["progress"]},
        "answers: expected a map, got list",
    ),
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "answers": {"": 1}},
        "answers key: must not be empty",
    ),
    (
        topics.STORE_RUN_SUSPEND,
        FIRE | {"attempt": 1, "answers": {"stage": "x" * (64 * 1024)}},
        "answers: is 65",
    ),
    (
        topics.STORE_RUN_FINISH,
        {"run_key": RUN, "state": "succeeded", "answers": "done"},
        "answers: expected a map, got str",
    ),
    (
        topics.STORE_RUN_FINISH,
        {"run_key": RUN, "state": "succeeded", "answers": {"q" * 101: 1}},
        "answers key: is 101 characters long",
    ),
    # store.run.attempt, .children, .stranded
    (topics.STORE_RUN_ATTEMPT, {"task_id": TASK}, "scheduled_at: is required"),
    (topics.STORE_RUN_ATTEMPT, {"scheduled_at": at(0).isoformat()}, "task_id: is required"),
    (
        topics.STORE_RUN_ATTEMPT,
        {"task_id": TASK, "scheduled_at": "2024-05-01T12:00:00"},
        "scheduled_at: '2024-05-01T12:00:00' has no UTC offset",
    ),
    (topics.STORE_RUN_ATTEMPT, FIRE, "run_key: is not a field of this request"),
    (topics.STORE_RUN_CHILDREN, {}, "parent_key: is required"),
    (topics.STORE_RUN_CHILDREN, {"parent_key": 3}, "parent_key: expected a string, got int"),
    (
        topics.STORE_RUN_CHILDREN,
        {"parent_key": RUN, "run_key": RUN},
        "run_key: is not a field of this request",
    ),
    (topics.STORE_RUN_STRANDED, {"limit": 0}, "limit: 0 is outside 1.."),
    (topics.STORE_RUN_STRANDED, {"after": 5}, "after: expected a string, got int"),
    (topics.STORE_RUN_STRANDED, {"states": []}, "states: is not a field of this request"),
]


@pytest.mark.parametrize(
    ("topic", "payload", "reason"),
    [pytest.param(*case, id=f"{case[0]}-{index}") for index, case in enumerate(BAD)],
)
async def test_bad_run_requests_are_refused_as_invalid_and_store_nothing(
    served: Served, topic: str, payload: dict[str, Any], reason: str
) -> None:
    await put_task(served)
    request = {k: v for k, v in payload.items() if v is not None}
    refusal = await served.refused(topic, **request)
    assert refusal.code == "invalid"
    assert refusal.reason.startswith(reason), refusal.reason
    assert (await served.refused("store.run.get", run_key=RUN)).code == "not_found"
    assert (await served.ask("store.run.list"))["runs"] == []
    assert (await served.ask("store.run.signal.list", run_key=RUN))["signals"] == []


async def test_a_full_inbox_refuses_the_next_signal(served: Served) -> None:
    await put_task(served)
    store = served.actor.store
    new = NewSignal(run_key=RUN, name="tick", payload=None, sender="bob", sent_at=at(1))
    await asyncio.gather(
        *(store.put_signal(new, task_id=TASK, scheduled_at=at(0)) for _ in range(1000))
    )
    refusal = await served.refused("store.run.signal.put", **signal("tick"))
    assert refusal.code == "invalid"
    assert len((await served.ask("store.run.signal.list", run_key=RUN))["signals"]) == 1000


# ------------------------------------------------------------------ the default ACL


@pytest.mark.parametrize("topic", STORE_RUN_TOPICS)
def test_executors_and_the_scheduler_may_ask_the_run_topics_and_nobody_else(topic: str) -> None:
    acl = Acl(default_acl(), Roles(default_roles()))
    assert acl.allows("executor-user", "ask", topic)
    assert acl.allows("scheduler", "ask", topic)
    assert acl.allows("store", "serve", topic)
    for identity in ("cli", "app", "health", "system", "bob"):
        assert not acl.allows(identity, "ask", topic), identity


def test_only_schedulers_push_to_runs_and_internal_identities_receive_it() -> None:
    acl = Acl(default_acl(), Roles(default_roles()))
    push = f"{topics.RUN_DELIVER}user"
    assert acl.allows("scheduler", "publish", push)
    assert acl.allows("scheduler-b", "publish", push)
    for identity in ("executor-user", "cli", "bob", "store"):
        assert not acl.allows(identity, "publish", push), identity
    assert acl.allows("executor-user", "subscribe", topics.RUN_DELIVER)
    assert acl.allows("executor-user", "receive", push)
    assert not acl.allows("bob", "subscribe", topics.RUN_DELIVER)
    assert not acl.allows("bob", "receive", push)


@pytest.mark.parametrize(
    "topic", [topics.RUN_SIGNAL, topics.RUN_CANCEL, topics.RUN_PAUSE, topics.RUN_RESUME]
)
def test_everyone_may_ask_the_public_run_topics(topic: str) -> None:
    acl = Acl(default_acl(), Roles(default_roles()))
    assert acl.allows("bob", "ask", topic)
    assert acl.allows("bob", "ask", topics.RUN_LIST)


@pytest.fixture
async def guarded(db_path: Path) -> AsyncIterator[ActorSystem]:
    """A store actor behind the default ACL and roles."""
    system = await ActorSystem.embedded(
        settings=ActorSettings(shutdown_deadline_s=2.0),
        bus_settings=BusSettings(acl=default_acl(), roles=default_roles()),
        name="guarded",
    )
    await spawn_instance(system, lambda: StoreActor(LibsqlStore(db_path, environ={})))
    yield system
    await asyncio.wait_for(system.stop(deadline_s=2.0), 10)


async def test_the_broker_denies_the_run_topics_to_others(guarded: ActorSystem) -> None:
    for identity in ("bob", "cli"):
        client = await guarded.client(identity)
        for topic, payload in (
            (topics.STORE_RUN_GET, {"run_key": RUN}),
            (topics.STORE_RUN_SIGNAL_PUT, signal()),
            (topics.STORE_RUN_CONTROL, FIRE | {"action": "cancel"}),
        ):
            with pytest.raises(RemoteError) as denied:
                await client.ask(topic, payload, timeout=10)
            assert denied.value.code == "denied", (identity, topic)
    executor = await guarded.client("executor-user")
    with pytest.raises(RemoteError) as missing:
        await executor.ask(topics.STORE_RUN_GET, {"run_key": RUN}, timeout=10)
    assert missing.value.code == "not_found"  # let through, and answered by the store
    reply = await executor.ask(topics.STORE_RUN_SIGNAL_LIST, {"run_key": RUN}, timeout=10)
    assert reply.payload == {"signals": []}


# ------------------------------------------------------------------ wave 2: the run tree


def child_fire(seconds: float, spawn: str, **fields: Any) -> dict[str, Any]:
    return {
        "task_id": f"user.child-{spawn}",
        "scheduled_at": at(seconds).isoformat(),
        "started_at": at(seconds).isoformat(),
        "trigger": "trigger",
        "start_key": "spawn",
        "parent_key": RUN,
        "spawn_key": spawn,
    } | fields


async def test_children_are_recorded_with_their_parent_and_listed(served: Served) -> None:
    await put_task(served)
    fires = [child_fire(1, "b", on_parent_cancel="abandon"), child_fire(2, "a")]
    recorded = await served.ask("store.execution.record_many", executions=fires)
    assert [e["duplicate"] for e in recorded["executions"]] == [False, False]
    children = (await served.ask("store.run.children", parent_key=RUN))["runs"]
    assert [(c["task_id"], c["spawn_key"], c["on_parent_cancel"]) for c in children] == [
        ("user.child-a", "a", "cancel"),
        ("user.child-b", "b", "abandon"),
    ]
    assert {(c["parent_key"], c["state"], c["start_key"]) for c in children} == {
        (RUN, "running", "spawn")
    }
    assert await served.ask("store.run.children", parent_key=f"{TASK}@7") == {"runs": []}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"on_parent_cancel": "ignore"}, "executions[0].on_parent_cancel: expected one of"),
        ({"on_parent_cancel": ["cancel"]}, "executions[0].on_parent_cancel: expected one of"),
        ({"parent_key": ""}, "executions[0].parent_key: must not be empty"),
        ({"spawn_key": 5}, "executions[0].spawn_key: expected a string, got int"),
        ({"spawn_key": "k" * 201}, "executions[0].spawn_key: is 201 characters long"),
    ],
)
async def test_a_bad_child_fire_is_refused_and_records_nothing(
    served: Served, fields: dict[str, Any], reason: str
) -> None:
    await put_task(served)
    refusal = await served.refused(
        "store.execution.record_many", executions=[child_fire(1, "a") | fields]
    )
    assert refusal.code == "invalid"
    assert refusal.reason.startswith(reason), refusal.reason
    assert (await served.ask("store.run.list"))["runs"] == []


async def test_a_successful_finish_closes_the_run_and_a_suspended_one_does_not(
    served: Served,
) -> None:
    await put_task(served)
    start = {
        "task_id": TASK,
        "scheduled_at": at(0).isoformat(),
        "started_at": at(0).isoformat(),
        "start_key": "k",
    }
    (first,) = (await served.ask("store.execution.record_many", executions=[start]))["executions"]
    await served.ask("store.run.suspend", **FIRE, attempt=1, wake_at=at(60).isoformat())
    suspended = {"suspended": {"wake_at": at(60).isoformat(), "waiting": None, "paused": False}}
    await served.ask(
        "store.execution.finish",
        execution_id=first["execution_id"],
        completed_at=at(1).isoformat(),
        success=True,
        result=suspended,
    )
    assert (await served.ask("store.run.get", run_key=RUN))["run"]["state"] == "sleeping"
    served.clock.advance(60)
    assert (await served.ask("store.run.wake", run_key=RUN))["run"]["attempt"] == 2
    wake = start | {"retry_count": 1, "trigger": "wake", "started_at": at(60).isoformat()}
    del wake["start_key"]
    (second,) = (await served.ask("store.execution.record_many", executions=[wake]))["executions"]
    await served.ask(
        "store.execution.finish_many",
        executions=[
            {
                "execution_id": second["execution_id"],
                "completed_at": at(61).isoformat(),
                "success": True,
                "result": {"n": 1},
            }
        ],
    )
    run = (await served.ask("store.run.get", run_key=RUN))["run"]
    assert (run["state"], run["updated_at"]) == ("succeeded", at(61).isoformat())


async def test_the_latest_attempt_and_stranded_runs(served: Served) -> None:
    await put_task(served)
    fire = {"task_id": TASK, "scheduled_at": at(0).isoformat()}
    assert await served.ask("store.run.attempt", **fire) == {"execution": None}
    first = {**fire, "started_at": at(0).isoformat()}
    await served.ask("store.execution.record_many", executions=[first])
    retry = first | {"retry_count": 1, "trigger": "retry", "started_at": at(5).isoformat()}
    (recorded,) = (await served.ask("store.execution.record_many", executions=[retry]))[
        "executions"
    ]
    latest = (await served.ask("store.run.attempt", **fire))["execution"]
    assert (latest["execution_id"], latest["retry_count"]) == (recorded["execution_id"], 1)
    # woken (attempt 2, whose fire exists: the retry) is not stranded; attempt 3 is
    await served.ask("store.run.suspend", **FIRE, attempt=2, wake_at=at(0).isoformat())
    assert await served.ask("store.run.stranded") == {"runs": [], "next_cursor": None}
    woken = (await served.ask("store.run.wake", run_key=RUN))["run"]
    assert (woken["state"], woken["attempt"]) == ("running", 3)
    stranded = await served.ask("store.run.stranded", limit=10)
    assert [(r["run_key"], r["attempt"], r["wakes"]) for r in stranded["runs"]] == [(RUN, 3, 1)]
    assert stranded["next_cursor"] is None


async def test_answers_are_stored_with_suspensions_and_finishes(served: Served) -> None:
    await put_task(served)
    answers = {"progress": {"done": 2, "of": 5}}
    slept = await served.ask(
        "store.run.suspend", **FIRE, attempt=1, wake_at=at(60).isoformat(), answers=answers
    )
    assert slept["run"]["answers"] == answers
    served.clock.advance(60)
    await served.ask("store.run.wake", run_key=RUN)
    again = await served.ask("store.run.suspend", **FIRE, attempt=2, waiting="go")
    assert again["run"]["answers"] == answers  # none sent: those stored are kept
    done = await served.ask(
        "store.run.finish", run_key=RUN, state="succeeded", answers={"progress": "all"}
    )
    assert (done["run"]["state"], done["run"]["answers"]) == ("succeeded", {"progress": "all"})


async def test_the_client_speaks_the_run_tree_topics(served: Served, store: StoreClient) -> None:
    await put_task(served)
    spawned = NewExecution(
        task_id="user.child-a",
        scheduled_at=at(1),
        started_at=at(1),
        trigger="trigger",
        start_key="spawn",
        parent_key=RUN,
        spawn_key="a",
        on_parent_cancel="abandon",
    )
    (fire,) = await store.record_fires([spawned])
    (child,) = await store.run_children(RUN)
    assert child == await served.actor.store.get_run(run_key("user.child-a", at(1)))
    assert (child.parent_key, child.spawn_key, child.on_parent_cancel) == (RUN, "a", "abandon")
    latest = await store.latest_attempt("user.child-a", at(1))
    assert latest is not None
    assert latest.execution_id == fire.execution_id
    assert await store.latest_attempt(TASK, at(0)) is None
    assert (await store.stranded_runs()).items == ()
    suspension = RunSuspension(
        run_key=RUN,
        task_id=TASK,
        scheduled_at=at(0),
        attempt=1,
        wake_at=None,
        waiting="approve",
        at=at(0),
        answers={"stage": "asked"},
    )
    suspended = await store.suspend_run(suspension)
    assert suspended.answers == {"stage": "asked"}
    kept = await store.suspend_run(dataclasses.replace(suspension, answers=None))
    assert kept.answers == {"stage": "asked"}
    finished = await store.finish_run(RUN, "cancelled", reason="no", answers={"stage": "gone"})
    assert finished is not None
    assert (finished.state, finished.answers) == ("cancelled", {"stage": "gone"})
    assert finished == await served.actor.store.get_run(RUN)
    with pytest.raises(InvalidValue) as bad:
        await store.finish_run(RUN, "cancelled", answers={"": 1})
    assert bad.value.field == "answers key"


async def test_an_inbox_full_in_bytes_refuses_the_next_signal_and_stores_nothing(
    served: Served,
) -> None:
    await put_task(served)
    big = "x" * (60 * 1024)
    held = 0
    refusal: RemoteError | None = None
    while refusal is None:
        try:
            await served.ask("store.run.signal.put", **signal("big", big))
        except RemoteError as exc:
            refusal = exc
        else:
            held += 1
    assert refusal.code == "invalid"
    assert refusal.reason.startswith(f"inbox: run {RUN} holds "), refusal.reason
    assert f"the {MAX_INBOX_BYTES} bytes an inbox may hold" in refusal.reason
    listed = (await served.ask("store.run.signal.list", run_key=RUN))["signals"]
    assert len(listed) == held == MAX_INBOX_BYTES // listed[0]["size_bytes"]


def test_only_executors_and_admins_ask_the_scheduler_s_exec_topics() -> None:
    acl = Acl(default_acl(), Roles(default_roles()))
    for topic in (topics.EXEC_SPAWN, topics.EXEC_ANSWER):
        assert acl.allows("executor-user", "ask", topic)
        assert acl.allows("cli", "ask", topic)  # an admin
        for identity in ("bob", "scheduler", "store", "health", "system"):
            assert not acl.allows(identity, "ask", topic), (identity, topic)
        assert acl.allows("scheduler", "serve", topic)
    for topic in (topics.RUN_TREE, topics.RUN_QUERY):
        assert acl.allows("bob", "ask", topic)
