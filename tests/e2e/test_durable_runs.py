"""Durable runs with real processes (issue 15): a durable sleep across a full restart of
``taskbus up``; a signal sent while the run sleeps, and one sent while its executor is down,
each delivered exactly once; a cancel that reaches a running step; a start key used twice that
starts one run. Each step leaves a file per process that ran it, outside any run."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from taskbus import RemoteError
from taskbus.client import TaskbusClient
from tests.e2e.durable_run_tasks import IN_STEP
from tests.e2e.system import (
    DEADLINE_S,
    TASKS,
    actor,
    environment,
    execution,
    history,
    sigkill,
    terminate,
    until,
    up,
)

DURABLE = "tests.e2e.durable_run_tasks"
pytestmark = pytest.mark.timeout(240)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return environment(
        tmp_path / "home", TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}", "{DURABLE}"]', **extra
    )


def _markers(tmp_path: Path) -> Path:
    markers = tmp_path / "markers"
    markers.mkdir()
    return markers


def _ran(markers: Path, step: str) -> list[str]:
    return sorted(p.name for p in markers.glob(f"{step}-*"))


async def _run(taskbus: TaskbusClient, task_id: str, run_key: str) -> dict[str, Any]:
    """The run as ``scheduler.run.list`` shows it ({} while it has no row)."""
    reply = await taskbus.ask("scheduler.run.list", {"task_id": task_id, "limit": 1000})
    for run in reply["runs"]:
        if run["run_key"] == run_key:
            return dict(run)
    return {}


async def _state_is(taskbus: TaskbusClient, task_id: str, run_key: str, state: str) -> None:
    async def reached() -> bool:
        return (await _run(taskbus, task_id, run_key)).get("state") == state

    async def shown() -> object:
        return await _run(taskbus, task_id, run_key)

    await until(reached, f"run {run_key} {state}", shown)


async def _finished(taskbus: TaskbusClient, task_id: str) -> dict[str, Any]:
    """The run's last attempt, once it has an outcome that is not a suspension."""
    last: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal last
        runs = await history(taskbus, task_id)
        if not runs:
            return False
        last = runs[0]
        result = last.get("result") or {}
        return last["success"] is not None and "suspended" not in result

    async def shown() -> object:
        return await history(taskbus, task_id)

    await until(settled, f"a final outcome of {task_id}", shown)
    return last


async def test_a_durable_sleep_resumes_after_a_full_restart(tmp_path: Path) -> None:
    markers = _markers(tmp_path)
    env = _env(tmp_path)
    system = await up(env)
    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        await taskbus.create(
            "user.nap",
            f"{DURABLE}:SleepAcrossRestart",
            "@yearly",
            config={"marker_dir": str(markers), "sleep_s": 4.0},
        )
        started = await taskbus.start("user.nap")
        await _state_is(taskbus, "user.nap", started.run, "sleeping")
        wake_at = datetime.fromisoformat((await _run(taskbus, "user.nap", started.run))["wake_at"])
    await terminate(system)
    # The wake instant passes while nothing of taskbus runs (a known instant, not luck).
    await asyncio.sleep(max(0.0, (wake_at - datetime.now(UTC)).total_seconds()) + 0.5)

    again = await up(env)
    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        last = await _finished(taskbus, "user.nap")
        await _state_is(taskbus, "user.nap", started.run, "succeeded")
    await terminate(again)

    assert last["success"] is True, last
    assert last["trigger"] == "wake", last
    assert _ran(markers, "before") == [f"before-{system.pid}"]  # not again after the restart
    assert _ran(markers, "after") == [f"after-{again.pid}"]
    assert last["result"]["steps"] == [f"before by {system.pid}", f"after by {again.pid}"]


async def test_signals_sent_while_a_run_sleeps_and_while_its_executor_is_down_arrive_once(
    tmp_path: Path,
) -> None:
    markers = _markers(tmp_path)
    env = _env(tmp_path, TASKBUS_CATEGORIES__USER__ENABLED="false")
    run_here = {**env, "TASKBUS_CATEGORIES__USER__ENABLED": "true"}
    system = await up(env)
    executor = await actor(run_here, "executor-user")
    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        config = {"marker_dir": str(markers), "sleep_s": 3.0}
        await taskbus.create("user.a", f"{DURABLE}:SleepThenApproval", "@yearly", config=config)
        await taskbus.create("user.b", f"{DURABLE}:SleepThenApproval", "@yearly", config=config)

        # A: the signal arrives while the run sleeps; it waits in the inbox until the run wakes.
        a = await taskbus.start("user.a")
        await _state_is(taskbus, "user.a", a.run, "sleeping")
        await taskbus.signal(a.run, "approve", {"by": "alice"})
        last_a = await _finished(taskbus, "user.a")

        # B: the run waits for its signal, its executor is killed, the signal arrives.
        b = await taskbus.start("user.b")
        await _state_is(taskbus, "user.b", b.run, "waiting")
        await sigkill(executor)
        await taskbus.signal(b.run, "approve", {"by": "bob"})
        await taskbus.signal(b.run, "approve", {"by": "bob, again"})  # one wait: one consumed
        executor = await actor(run_here, "executor-user")
        last_b = await _finished(taskbus, "user.b")
        await _state_is(taskbus, "user.b", b.run, "succeeded")

        with pytest.raises(RemoteError, match="is succeeded"):  # a finished run: conflict
            await taskbus.signal(b.run, "approve", {"by": "late"})
    await terminate(executor)
    await terminate(system)

    assert last_a["success"] is True, last_a
    assert last_a["result"]["approval"] == {"by": "alice"}, last_a
    assert last_b["success"] is True, last_b
    assert last_b["result"]["approval"] == {"by": "bob"}, last_b
    assert len(_ran(markers, "prepare-user.a")) == 1  # once per run, never again after a wake
    assert len(_ran(markers, "prepare-user.b")) == 1
    done = sorted(p.read_text() for p in markers.glob("done-*"))
    assert done == [repr({"by": "alice"}), repr({"by": "bob"})]


async def test_a_cancel_reaches_a_running_step_and_a_start_key_starts_one_run(
    tmp_path: Path,
) -> None:
    markers = _markers(tmp_path)
    env = _env(tmp_path)
    system = await up(env)
    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        config = {"marker_dir": str(markers)}
        await taskbus.create("user.stuck", f"{DURABLE}:StuckInStep", "@yearly", config=config)

        first = await taskbus.start("user.stuck", key="order-17")
        second = await taskbus.start("user.stuck", key="order-17")
        assert not first.duplicate
        assert second.duplicate
        assert (second.run, second.execution_id) == (first.run, first.execution_id)

        async def in_step() -> bool:
            return bool(_ran(markers, IN_STEP))

        await until(in_step, "the run inside its step")
        await taskbus.cancel_run(first.run, reason="the user changed their mind")
        last = await _finished(taskbus, "user.stuck")  # long before the step's 120 s
        await _state_is(taskbus, "user.stuck", first.run, "cancelled")
        stored = await execution(taskbus, first.execution_id)
        runs = await history(taskbus, "user.stuck")
    await terminate(system)

    assert len(runs) == 1, runs  # the key started one run, and the cancel retried nothing
    assert stored["success"] is False, stored
    assert "RunCancelled" in stored["result"]["error_type"], stored
    assert last["execution_id"] == first.execution_id
