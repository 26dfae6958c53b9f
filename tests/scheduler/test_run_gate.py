"""The run gate in the scheduler actor (actors.scheduling.gate), on a real bus and store and the
fake clock: each overlap rule on a task whose runs an executor holds as long as the test says,
the category limit and a concurrency key across tasks, a takeover's recovery of held fires, a
slot whose result never came freed by the sweep, and a run that ended unseen (cancelled while a
retry waited) forgotten before the next fire is judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from actors.scheduling import Dispatch
from bus import BusClosed, Delivery
from scheduler.overlap import Limits
from store.records import run_key
from taskbus.cli import parser
from taskbus.cli import task as cli_task
from tests.bus.waits import eventually
from tests.scheduler.rig import RecordingExecutor, Rig, kill


@dataclass
class HoldingExecutor(RecordingExecutor):
    """Takes every dispatch at once and ends each run only when the test lets it go
    (``finish``): ``live`` are the runs taken and not ended."""

    live: dict[str, tuple[Dispatch, Delivery]] = field(default_factory=dict)
    taken: list[Dispatch] = field(default_factory=list)
    most: int = 0  # the most runs live at once

    async def _loop(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                delivery = await self._consumer.get()
            except BusClosed:  # the test ended
                return
            dispatch = Dispatch.read(delivery.envelope.payload)
            self.live[dispatch.execution_id] = (dispatch, delivery)
            self.taken.append(dispatch)
            self.most = max(self.most, len(self.live))

    async def finish(self, dispatch: Dispatch) -> None:
        _, delivery = self.live.pop(dispatch.execution_id)
        await RecordingExecutor._run(self, delivery)

    async def taken_count(self, count: int) -> list[Dispatch]:
        await eventually(lambda: len(self.taken) >= count, f"{count} dispatches taken", 10)
        return self.taken[:count]


async def holding(rig: Rig) -> HoldingExecutor:
    await rig.executor.stop()
    executor = HoldingExecutor(rig.executor.client, rig.executor.queue, clock=rig.clock)
    await executor.start()
    rig.executor = executor
    return executor


async def create(rig: Rig, task_id: str, **fields: Any) -> None:
    await rig.caller.ask(
        "scheduler.task.create",
        task_id=task_id,
        task_class="reports:Daily",
        schedule="0 3 * * *",  # not due during a test: its fires are triggered
        **fields,
    )


async def trigger(rig: Rig, task_id: str) -> dict[str, Any]:
    await rig.advance(1)  # a trigger's instant is now: each its own
    return dict(await rig.caller.ask("scheduler.task.trigger", task_id=task_id))


async def execution(rig: Rig, execution_id: str) -> dict[str, Any]:
    return dict(
        (await rig.caller.ask("store.execution.get", execution_id=execution_id))["execution"]
    )


async def missed(rig: Rig, task_id: str) -> list[dict[str, Any]]:
    reply = await rig.caller.ask("scheduler.task.missed", task_id=task_id)
    return list(reply["missed"])


def state(name: str, execution_id: str | None = None) -> Any:
    def matches(envelope: Any) -> bool:
        payload = envelope.payload
        return bool(
            payload.get("state") == name
            and (execution_id is None or payload.get("execution_id") == execution_id)
        )

    return matches


async def test_skip_records_the_fire_missed_with_the_run_still_running(rig: Rig) -> None:
    scheduler = await rig.leads("scheduler")
    executor = await holding(rig)
    await create(rig, "user.slow")
    first = await trigger(rig, "user.slow")
    (running,) = await executor.taken_count(1)
    second = await trigger(rig, "user.slow")
    event = await rig.caller.event(
        "scheduler.task.status", state("skipped", second["execution_id"])
    )
    reason = f"overlap: skipped, run {running.scheduled_at.isoformat()} still running"
    assert event.payload["reason"] == reason
    ended = await execution(rig, second["execution_id"])
    assert ended["success"] is False
    assert ended["error_message"].startswith("not run: skipped by overlap policy skip")
    assert [m["reason"] for m in await missed(rig, "user.slow")] == [reason]
    assert scheduler.counters["skipped_overlap"] == 1
    await executor.finish(running)
    gate = scheduler._run_gate
    await eventually(lambda: not gate.overlap.in_progress("user.slow"), "the run ended", 10)
    third = await trigger(rig, "user.slow")  # the run ended: the next fire runs
    await executor.taken_count(2)
    assert [d.execution_id for d in executor.taken] == [
        first["execution_id"],
        third["execution_id"],
    ]


async def test_buffer_one_runs_the_buffered_fire_once_after_the_run(rig: Rig) -> None:
    await rig.leads("scheduler")
    executor = await holding(rig)
    await create(rig, "user.buffered", run_policy={"overlap": "buffer_one"})
    await trigger(rig, "user.buffered")
    (running,) = await executor.taken_count(1)
    second = await trigger(rig, "user.buffered")
    await rig.caller.event("scheduler.task.status", state("buffered", second["execution_id"]))
    third = await trigger(rig, "user.buffered")
    event = await rig.caller.event("scheduler.task.status", state("skipped", third["execution_id"]))
    assert event.payload["reason"] == "overlap: buffer full"
    assert len(executor.taken) == 1
    await executor.finish(running)
    (_, buffered) = await executor.taken_count(2)
    assert buffered.execution_id == second["execution_id"]
    await executor.finish(buffered)
    await rig.advance(1)
    assert len(executor.taken) == 2  # once, and nothing else


async def test_cancel_other_cancels_the_run_and_holds_the_new_fire_until_its_end(
    rig: Rig,
) -> None:
    await rig.leads("scheduler")
    executor = await holding(rig)
    pushes = await rig.caller.client.subscribe("scheduler.run.deliver.user")
    await create(rig, "user.latest", run_policy={"overlap": "cancel_other"})
    await trigger(rig, "user.latest")
    (running,) = await executor.taken_count(1)
    second = await trigger(rig, "user.latest")
    push = await pushes.get(timeout=10)
    assert push.payload["kind"] == "cancel"
    assert push.payload["run_key"] == run_key(running.task_id, running.scheduled_at)
    assert "cancel_other" in push.payload["reason"]
    assert len(executor.taken) == 1  # held until the cancelled run's result
    await executor.finish(running)
    (_, after) = await executor.taken_count(2)
    assert after.execution_id == second["execution_id"]


async def test_the_category_limit_and_a_key_hold_fires_until_an_attempt_ends(
    rig: Rig,
) -> None:
    scheduler = await rig.start_scheduler(
        name="scheduler", clock=rig.clock, lead=False, limits=Limits(categories={"user": 2})
    )
    await eventually(lambda: rig.start_scheduler.running("scheduler"), "leads", 10)
    executor = await holding(rig)
    for name in ("a", "b", "c"):
        await create(rig, f"user.{name}")
    for name in ("x", "y"):  # one key value: one at a time across both tasks
        await create(
            rig,
            f"user.{name}",
            config={"account": "acme"},
            run_policy={"concurrency_key": "account"},
        )
    for name in ("a", "b", "c"):
        await trigger(rig, f"user.{name}")
    first, second = await executor.taken_count(2)
    held = await rig.caller.event("scheduler.task.status", state("buffered"))
    assert held.payload["reason"] == "concurrency: category user at its limit of 2 runs at once"
    await rig.advance(1)
    assert len(executor.taken) == 2
    await executor.finish(first)
    (*_, third) = await executor.taken_count(3)
    assert third.task_id == "user.c"
    await executor.finish(second)
    await executor.finish(third)
    await trigger(rig, "user.x")
    await executor.taken_count(4)
    y = await trigger(rig, "user.y")
    event = await rig.caller.event("scheduler.task.status", state("buffered", y["execution_id"]))
    assert (
        event.payload["reason"] == 'concurrency: key account="acme" at its limit of 1 runs at once'
    )
    await executor.finish(executor.taken[3])
    (*_, last) = await executor.taken_count(5)
    assert last.task_id == "user.y"
    assert executor.most <= 2
    assert scheduler.counters["held"] >= 2


async def test_a_new_leader_runs_the_oldest_recovered_fire_and_holds_the_rest(rig: Rig) -> None:
    await rig.leads("scheduler-1")
    executor = await holding(rig)
    await create(rig, "user.queue", run_policy={"overlap": "buffer_all"})
    await trigger(rig, "user.queue")
    (running,) = await executor.taken_count(1)
    later = [await trigger(rig, "user.queue") for _ in range(2)]
    for one in later:
        await rig.caller.event("scheduler.task.status", state("buffered", one["execution_id"]))
    await kill(rig.system, "scheduler-1")
    await rig.leads("scheduler-2")  # dispatches again the three unfinished fires, by the gate
    await rig.advance(1)
    assert len(executor.taken) == 1  # the running one is the oldest: held fires stay held
    await executor.finish(running)
    (_, second) = await executor.taken_count(2)
    assert second.execution_id == later[0]["execution_id"]
    await executor.finish(second)
    (*_, third) = await executor.taken_count(3)
    assert third.execution_id == later[1]["execution_id"]


async def test_a_result_that_never_comes_frees_its_slot_once_the_store_shows_it_ended(
    rig: Rig,
) -> None:
    await rig.start_scheduler(
        name="scheduler", clock=rig.clock, lead=False, limits=Limits(categories={"user": 1})
    )
    await eventually(lambda: rig.start_scheduler.running("scheduler"), "leads", 10)
    executor = await holding(rig)
    for name in ("a", "b"):
        await create(rig, f"user.{name}")
    await trigger(rig, "user.a")
    (lost,) = await executor.taken_count(1)
    await trigger(rig, "user.b")
    await rig.caller.ask(  # finished in the store, its result lost (quarantined, say)
        "store.execution.finish",
        execution_id=lost.execution_id,
        completed_at=rig.clock.wall().isoformat(),
        success=True,
        result={"ok": True},
        error_message=None,
        retry_count=0,
    )
    await rig.advance(30)
    assert len(executor.taken) == 1  # its slot is still held
    await rig.advance(31)  # the sweep finds it ended
    (_, second) = await executor.taken_count(2)
    assert second.task_id == "user.b"


async def test_a_run_that_ended_unseen_does_not_hold_back_the_next_fire(rig: Rig) -> None:
    await rig.leads("scheduler")
    executor = await holding(rig)
    executor.outcome = lambda dispatch: RuntimeError("boom")
    await create(rig, "user.flaky", retry_policy={"max_attempts": 3, "base_delay_s": 3600})
    await trigger(rig, "user.flaky")
    (failed,) = await executor.taken_count(1)
    await executor.finish(failed)  # a retry waits an hour: the run is still in progress
    await rig.caller.event("scheduler.task.status", state("retry_scheduled"))
    skipped = await trigger(rig, "user.flaky")
    await rig.caller.event("scheduler.task.status", state("skipped", skipped["execution_id"]))
    key = run_key(failed.task_id, failed.scheduled_at)
    await rig.caller.ask("scheduler.run.cancel", run=key)  # drops the retry: no result comes
    later = await trigger(rig, "user.flaky")
    (_, second) = await executor.taken_count(2)
    assert second.execution_id == later["execution_id"]


def test_the_cli_sets_the_overlap_rule_and_refuses_an_unknown_one() -> None:
    create = ["task", "create", "user.x", "--class", "a:B", "--schedule", "@daily"]
    args = parser.build().parse_args([*create, "--overlap", "buffer_one"])
    assert cli_task._policies(args)["run_policy"] == {"overlap": "buffer_one"}
    with pytest.raises(SystemExit):
        parser.build().parse_args([*create, "--overlap", "sometimes"])
