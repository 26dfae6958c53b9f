"""``taskbus run retry`` with real processes (issue 15): a run of three steps whose third fails
for good (its task's retry policy allows one attempt) is retried from step two once the test
fixed step three; the new attempt of the same fire keeps step one (not run again) and runs steps
two and three. Bad asks (an unknown run or step, a run still running, wrong types) are refused
precisely, one line and exit 1 from the command, having stored nothing. Each step leaves a file
per run and attempt that ran it, outside any run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from taskbus import RemoteError
from taskbus.client import TaskbusClient
from tests.e2e.procs import taskbus as cli
from tests.e2e.retry_tasks import FIXED, RELEASE
from tests.e2e.system import DEADLINE_S, TASKS, environment, history, terminate, until, up

RETRY = "tests.e2e.retry_tasks"
ONCE = {"max_attempts": 1}  # a failure is final: the run is given up
pytestmark = pytest.mark.timeout(240)


def _ran(markers: Path, step: str, micros: str) -> list[str]:
    """The attempts that ran ``step`` of the run (from their marker files)."""
    return sorted(p.name.rsplit("-", 1)[1] for p in markers.glob(f"{step}-{micros}-*"))


async def _command(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = await asyncio.to_thread(cli, env, *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


async def _ended(taskbus: TaskbusClient, task_id: str, count: int) -> list[dict[str, Any]]:
    """The task's executions (latest first), once ``count`` of them have an outcome."""
    runs: list[dict[str, Any]] = []

    async def settled() -> bool:
        nonlocal runs
        runs = await history(taskbus, task_id)
        return len(runs) >= count and all(r["success"] is not None for r in runs)

    async def shown() -> object:
        return runs

    await until(settled, f"{count} ended runs of {task_id}", shown)
    return runs


async def _steps(taskbus: TaskbusClient, execution_id: str) -> list[tuple[str, str]]:
    reply = await taskbus.ask("scheduler.run.get", {"execution_id": execution_id})
    return [(s["name"], s["status"]) for s in reply["steps"]]


async def test_a_run_given_up_is_retried_from_a_step(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    env = environment(tmp_path / "home", TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}", "{RETRY}"]')
    system = await up(env)
    try:
        async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
            await taskbus.stats(wait_s=DEADLINE_S)
            config = {"marker_dir": str(markers)}
            await taskbus.create(
                "user.steps",
                f"{RETRY}:ThreeStepsThirdFails",
                "@yearly",
                config=config,
                retry_policy=ONCE,
            )
            await taskbus.create("user.held", f"{RETRY}:Held", "@yearly", config=config)
            started = await taskbus.start("user.steps")
            micros = started.run.rpartition("@")[2]
            (failed,) = await _ended(taskbus, "user.steps", 1)
            assert failed["success"] is False, failed
            assert "step three cannot work yet" in failed["error_message"], failed
            assert await _steps(taskbus, started.execution_id) == [("one", "ok"), ("two", "ok")]

            # Bad asks: precise, and nothing stored.
            code, out, err = await _command(env, "run", "retry", started.run, "--from-step", "four")
            assert (code, out) == (1, "")
            assert err == (
                f"taskbus: scheduler.run.retry: not_found: run {started.run} has no step 'four'\n"
            )
            unknown = f"user.steps@{int(micros) + 1}"
            code, _, err = await _command(env, "run", "retry", unknown)
            assert (code, err) == (
                1,
                f"taskbus: scheduler.run.retry: not_found: run {unknown!r} not found\n",
            )
            for payload in (
                {"run": started.run, "from_step": 2},
                {"run": 7},
                {"run": started.run, "step": "two"},
            ):
                with pytest.raises(RemoteError) as refused:
                    await taskbus.ask("scheduler.run.retry", payload)
                assert refused.value.code == "invalid", payload
            held = await taskbus.start("user.held")

            async def holding() -> bool:
                return bool(list(markers.glob("held-*")))

            await until(holding, "the held run inside its wait")
            code, _, err = await _command(env, "run", "retry", held.run, "--from-step", "held")
            assert (code, err) == (
                1,
                f"taskbus: scheduler.run.retry: conflict: run {held.run} is running\n",
            )
            (markers / RELEASE).touch()
            (held_run,) = await _ended(taskbus, "user.held", 1)
            assert held_run["success"] is True, held_run
            assert len(await history(taskbus, "user.steps")) == 1
            assert await _steps(taskbus, started.execution_id) == [("one", "ok"), ("two", "ok")]
            assert _ran(markers, "one", micros) == ["1"]
            assert _ran(markers, "two", micros) == ["1"]

            # Fixed, retried from step two: one is kept, two and three run.
            (markers / FIXED).touch()
            code, out, err = await _command(
                env, "run", "retry", started.run, "--from-step", "two", "--json"
            )
            assert code == 0, err
            reply = json.loads(out)
            assert reply["deleted_steps"] == ["two"]
            assert (reply["run"]["run_key"], reply["run"]["state"]) == (started.run, "running")
            last, first = await _ended(taskbus, "user.steps", 2)
            assert first["execution_id"] == started.execution_id
            assert last["execution_id"] == reply["execution_id"]
            assert (last["success"], last["trigger"], last["retry_count"]) == (True, "retry", 1)
            assert last["result"]["steps"] == [
                "one at attempt 1",
                "two at attempt 2",
                "three at attempt 2",
            ]
            assert await _steps(taskbus, last["execution_id"]) == [
                ("one", "ok"),
                ("two", "ok"),
                ("three", "ok"),
            ]
            runs = await taskbus.runs("user.steps")
            assert [(r["run_key"], r["state"]) for r in runs] == [(started.run, "succeeded")]
    finally:
        await terminate(system)

    assert _ran(markers, "one", micros) == ["1"]  # kept: never run again
    assert _ran(markers, "two", micros) == ["1", "2"]  # run again from there
    assert _ran(markers, "three", micros) == ["2"]
