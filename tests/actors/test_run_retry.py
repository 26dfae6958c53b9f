"""``scheduler.run.retry`` on a real bus, a real store actor over a real encrypted file and the
schedulers' fake clock: a run given up is reopened from a step on (that step and the later ones
deleted, the earlier kept) or for its failed steps only, and a new attempt of the same fire is
fired (trigger ``retry``, the next attempt), the dead letter kept; a run that has not ended,
an unknown run or step, another's run and bad input are refused precisely, storing nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from actors import ActorSystem
from actors.scheduling import RESULT_QUEUE, Dispatch, RunResult
from bus import BusClient, RemoteError
from store.records import StepOutcome, run_key
from tests.actors import test_run_control as control
from tests.actors.test_run_control import (
    TASK,
    DurableExecutor,
    executions,
    settled,
)
from tests.bus.waits import eventually
from tests.scheduler.rig import Rig

# the fixtures of the run control tests
system, caller, clock, executor, rig, store_clock = (
    control.system,
    control.caller,
    control.clock,
    control.executor,
    control.rig,
    control.store_clock,
)

# One attempt: (the steps it stores, in order: name -> failed?, then whether it fails).
Script = Callable[[Dispatch], tuple[list[tuple[str, bool]], bool]]
ONCE = {"max_attempts": 1, "base_delay_s": 1.0}  # a failure is final


@dataclass
class StepRunner:
    """Turns the rig's executor into one that stores steps, asking the steps the run kept
    first, as a task's journal does: a kept step is not run (nor stored) again."""

    executor: DurableExecutor
    script: Script
    ran: list[tuple[int, list[str]]] = field(default_factory=list)  # (attempt, steps run)

    async def run(self, delivery: Any) -> None:
        runner = self.executor
        assert runner.store is not None
        dispatch = Dispatch.read(delivery.envelope.payload)
        key = run_key(dispatch.task_id, dispatch.scheduled_at)
        kept = {s.name for s in await runner.store.run_steps(key)}
        steps, fails = self.script(dispatch)
        now = runner.clock.wall()
        done: list[str] = []
        for name, failed in steps:
            if name in kept:
                continue
            done.append(name)
            await runner.store.put_step(
                key,
                StepOutcome(
                    name=name,
                    status="error" if failed else "ok",
                    result=None if failed else f"{name} at {dispatch.attempt}",
                    error="RuntimeError: step failed" if failed else None,
                    attempts=1,
                    started_at=now,
                    finished_at=now,
                ),
            )
        self.ran.append((dispatch.attempt, done))
        error = "RuntimeError: step failed" if fails else None
        await runner.client.ask(
            "store.execution.finish",
            {
                "execution_id": dispatch.execution_id,
                "completed_at": now.isoformat(),
                "success": not fails,
                "result": None if fails else {"ok": 1},
                "error_message": error,
                "retry_count": dispatch.attempt - 1,
            },
            timeout=10,
        )
        result = RunResult(
            execution_id=dispatch.execution_id,
            task_id=dispatch.task_id,
            scheduled_at=dispatch.scheduled_at,
            attempt=dispatch.attempt,
            success=not fails,
            completed_at=now,
            error_type=("RuntimeError", "Exception") if fails else (),
            error_message=error or "",
            wakes=dispatch.wakes,
        )
        await runner.client.enqueue(RESULT_QUEUE, result.payload(), 10)
        delivery.ack()
        runner.runs.append(dispatch)
        runner.ran.set()


THREE = [("one", False), ("two", False), ("three", False)]


def third_fails_first(dispatch: Dispatch) -> tuple[list[tuple[str, bool]], bool]:
    """Step three fails (for good: no step retry) in the first attempt only."""
    if dispatch.attempt == 1:
        return [("one", False), ("two", False), ("three", True)], True
    return THREE, False


def attempt_fails_first(dispatch: Dispatch) -> tuple[list[tuple[str, bool]], bool]:
    """The first attempt fails after step two, storing no failed step."""
    if dispatch.attempt == 1:
        return [("one", False), ("two", False)], True
    return THREE, False


async def given_up(rig: Rig, script: Script) -> tuple[StepRunner, Dispatch, str]:
    """A leading scheduler, the task (failures final), its triggered run failed for good."""
    runner = StepRunner(rig.executor, script)  # type: ignore[arg-type]
    rig.executor._run = runner.run  # type: ignore[method-assign]
    await rig.leads("scheduler")
    await rig.caller.ask("scheduler.task.create", **(TASK | {"retry_policy": ONCE}))
    reply = await rig.caller.ask("scheduler.task.trigger", task_id="user.report")
    (first,) = await rig.executor.until(1)
    key = reply["run"]

    async def dead() -> bool:
        found = await rig.caller.ask("store.dead_letters", task_id="user.report")
        return bool(found["dead_letters"])

    await eventually(dead, "the fire given up", 10)  # the run has no row: none is made
    return runner, first, key


async def step_names(rig: Rig, key: str) -> list[str]:
    reply = await rig.caller.ask("store.step.list", run_key=key)
    return [s["name"] for s in reply["steps"]]


async def test_retry_from_a_step_runs_it_and_the_later_ones_again(rig: Rig) -> None:
    runner, first, key = await given_up(rig, third_fails_first)
    assert runner.ran == [(1, ["one", "two", "three"])]
    rig.clock.advance(5.0)
    reply = await rig.caller.ask("scheduler.run.retry", run=key, from_step="two")
    assert reply["deleted_steps"] == ["two", "three"]
    assert (reply["run"]["run_key"], reply["run"]["state"], reply["run"]["attempt"]) == (
        key,
        "running",
        2,
    )
    _, again = await rig.executor.until(2)
    assert (again.execution_id, again.scheduled_at, again.attempt, again.wakes) == (
        reply["execution_id"],
        first.scheduled_at,
        2,
        0,
    )
    assert runner.ran[1] == (2, ["two", "three"])  # step one kept, not run again
    await settled(rig, key, "succeeded")
    history = await executions(rig.caller)
    assert sorted(e["trigger"] for e in history) == ["retry", "trigger"]
    letters = await rig.caller.ask("store.dead_letters", task_id="user.report")
    assert len(letters["dead_letters"]) == 1  # kept as history
    assert await step_names(rig, key) == ["one", "two", "three"]


async def test_retry_without_a_step_runs_the_failed_steps_again(rig: Rig) -> None:
    runner, first, key = await given_up(rig, third_fails_first)
    reply = await rig.caller.ask("scheduler.run.retry", run=first.execution_id)
    assert reply["deleted_steps"] == ["three"]
    await rig.executor.until(2)
    assert runner.ran[1] == (2, ["three"])
    await settled(rig, key, "succeeded")
    # a succeeded run is retried only from a step
    refused = await rig.caller.refused("scheduler.run.retry", run=key)
    assert (refused.code, refused.reason) == ("conflict", f"run {key} is succeeded")
    again = await rig.caller.ask("scheduler.run.retry", run=key, from_step="one")
    assert again["deleted_steps"] == ["one", "two", "three"]
    await rig.executor.until(3)
    assert runner.ran[2] == (3, ["one", "two", "three"])


async def test_a_run_without_a_row_is_retried_by_its_latest_attempt(rig: Rig) -> None:
    runner, _, key = await given_up(rig, attempt_fails_first)
    reply = await rig.caller.ask("scheduler.run.retry", run=key)
    assert reply["deleted_steps"] == []
    await rig.executor.until(2)
    assert runner.ran[1] == (2, ["three"])


async def test_a_retried_run_that_fails_again_is_given_up_again(rig: Rig) -> None:
    always: Script = lambda d: ([("one", False), ("two", True)], True)  # noqa: E731
    runner, _, key = await given_up(rig, always)
    await rig.caller.ask("scheduler.run.retry", run=key)
    await rig.executor.until(2)

    await settled(rig, key, "failed")  # given up again: the row made by the retry ends
    assert runner.ran[1] == (2, ["two"])
    letters = await rig.caller.ask("store.dead_letters", task_id="user.report")
    assert len(letters["dead_letters"]) == 1  # one per fire: the first give-up's is kept


async def test_bad_asks_are_refused_precisely_and_store_nothing(
    rig: Rig, system: ActorSystem
) -> None:
    _, first, key = await given_up(rig, third_fails_first)
    unknown = run_key("user.report", first.scheduled_at + timedelta(seconds=1))
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({"run": key, "from_step": "four"}, "not_found", f"run {key} has no step 'four'"),
        ({"run": unknown}, "not_found", f"run {unknown!r} not found"),
        ({"run": "user.gone@1"}, "not_found", None),
        ({"run": "00000000-0000-4000-8000-000000000000"}, "not_found", None),
        ({"run": key, "from_step": 2}, "invalid", None),
        ({"run": key, "from_step": ""}, "invalid", None),
        ({"run": 7}, "invalid", None),
        ({"run": "not a run"}, "invalid", None),
        ({}, "invalid", None),
        ({"run": key, "from": "two"}, "invalid", None),
    ]
    for payload, code, reason in cases:
        refused = await rig.caller.refused("scheduler.run.retry", **payload)
        assert refused.code == code, (payload, refused.reason)
        if reason is not None:
            assert refused.reason == reason
    mallory: BusClient = await system.client("mallory")
    try:
        with pytest.raises(RemoteError) as denied:
            await mallory.ask("scheduler.run.retry", {"run": key}, timeout=10)
        assert denied.value.code == "denied"
    finally:
        await mallory.stop()
    # the store's topic refuses bad fields itself, naming them
    fire = {
        "run_key": key,
        "task_id": "user.report",
        "scheduled_at": first.scheduled_at.isoformat(),
    }
    wire: list[tuple[dict[str, Any], str]] = [
        (fire | {"task_id": "user.other"}, "run_key"),
        (fire | {"from_step": 3}, "from_step"),
        (fire | {"from_step": "a\nb"}, "from_step"),
        (fire | {"scheduled_at": "soon"}, "scheduled_at"),
        (fire | {"extra": 1}, "extra"),
    ]
    for payload, field_name in wire:
        refused = await rig.caller.refused("store.run.reopen", **payload)
        assert refused.code == "invalid", payload
        assert field_name in refused.reason, (payload, refused.reason)
    stepless = await rig.caller.refused("store.run.reopen", **(fire | {"from_step": "four"}))
    assert (stepless.code, stepless.reason) == ("not_found", f"run {key} has no step 'four'")
    gone = await rig.caller.refused("store.run.get", run_key=key)
    assert gone.code == "not_found"  # no row made
    assert await step_names(rig, key) == ["one", "two", "three"]
    assert len(await executions(rig.caller)) == 1
    assert len(rig.executor.runs) == 1


async def test_a_run_that_has_not_ended_is_refused(rig: Rig) -> None:
    runner, _, key = await given_up(rig, third_fails_first)
    await rig.caller.ask("scheduler.run.retry", run=key, from_step="three")
    await rig.executor.until(2)
    await settled(rig, key, "succeeded")
    # a run waiting for its retry has not ended: with a policy that retries, after a failure
    retrying = {"max_attempts": 3, "base_delay_s": 3600.0}
    await rig.caller.ask("scheduler.task.update", task_id="user.report", retry_policy=retrying)
    runner.script = lambda d: ([("x", False)], True)
    rig.clock.advance(1.0)
    reply = await rig.caller.ask("scheduler.task.trigger", task_id="user.report")
    await rig.executor.until(3)

    async def pending() -> bool:
        status = await rig.caller.ask("scheduler.task.status", task_id="user.report")
        return bool(status["pending_retries"])

    await eventually(pending, "the retry waiting", 10)
    refused = await rig.caller.refused("scheduler.run.retry", run=reply["run"])
    assert (refused.code, refused.reason) == ("conflict", f"run {reply['run']} is running")
    assert await step_names(rig, reply["run"]) == ["x"]
