"""Overlap and concurrency across processes (issue 16): ``taskbus up`` with no user executor,
and TWO ``user`` executor processes (``executor-user`` and ``executor-user-2``), each of which
would run two user tasks at once by itself. The scheduler's run gate holds across both: a
``skip`` task whose runs take longer than its interval never runs twice at once and its skipped
fires are recorded missed with the reason; a ``buffer_one`` task runs its buffered fire exactly
once; the category's limit of 2 holds across both processes, as the tasks themselves observe."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bus import KeysDirectory
from config import load_settings
from taskbus.client import TaskbusClient
from tests.e2e.overlap_tasks import read_stamps
from tests.e2e.system import (
    DEADLINE_S,
    TASKS,
    Child,
    _start,
    environment,
    execution,
    history,
    missed,
    terminate,
    until,
    up,
)

OVERLAP_TASKS = "tests.e2e.overlap_tasks"
STAMP = f"{OVERLAP_TASKS}:Stamp"
LIMIT = 2  # categories.user.concurrency
pytestmark = pytest.mark.timeout(240)


@dataclass
class System:
    taskbus: TaskbusClient
    stamps: Path


async def executor(env: dict[str, str], identity: str) -> Child:
    return await asyncio.to_thread(
        _start,
        env,
        identity,
        "actor",
        "executor-user",
        "--identity",
        identity,
        "--connect",
        env["TASKBUS_ENDPOINT"],
        ready="connected to",
    )


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[System]:
    home = tmp_path / "home"
    KeysDirectory(home / "keys").identity_keypair("executor-user-2", create=True)
    env = environment(
        home,
        TASKBUS_CATEGORIES__USER__ENABLED="false",
        TASKBUS_CATEGORIES__USER__CONCURRENCY=str(LIMIT),
        TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS="20",
        TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}", "{OVERLAP_TASKS}"]',
    )
    run_here = {**env, "TASKBUS_CATEGORIES__USER__ENABLED": "true"}
    system = await up(env)
    first = await executor(run_here, "executor-user")
    second = await executor(run_here, "executor-user-2")
    try:
        async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
            await taskbus.stats(wait_s=DEADLINE_S)
            yield System(taskbus, tmp_path / "stamps.jsonl")
    finally:
        for child in (second, first, system):
            await terminate(child)


def most_at_once(stamps: list[dict[str, Any]]) -> int:
    """The most runs in progress at one moment (an end before a start at the same moment)."""
    edges = sorted([(s["start"], 1) for s in stamps] + [(s["end"], -1) for s in stamps])
    now = most = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def ran(stamps: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    return sorted((s for s in stamps if s["task_id"] == task_id), key=lambda s: s["start"])


async def settled(taskbus: TaskbusClient, task_id: str, count: int) -> list[dict[str, Any]]:
    """The task's executions, once ``count`` have an outcome and none is unfinished."""

    async def done() -> bool:
        runs = await history(taskbus, task_id)
        return len(runs) >= count and all(r["success"] is not None for r in runs)

    await until(done, f"{count} runs of {task_id} settled", lambda: history(taskbus, task_id))
    return await history(taskbus, task_id)


async def test_overlap_and_the_category_limit_hold_across_two_executor_processes(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as system:
        taskbus, stamps = system.taskbus, str(system.stamps)

        # skip: fires every second, each run takes 2.5 s
        await taskbus.create(
            "user.skipper", STAMP, "every 1s", config={"stamps": stamps, "seconds": 2.5}
        )

        async def three_ran() -> bool:
            return len(ran(read_stamps(stamps), "user.skipper")) >= 3

        await until(three_ran, "three runs of user.skipper")
        await taskbus.disable("user.skipper")
        runs = await settled(taskbus, "user.skipper", 4)
        done = ran(read_stamps(stamps), "user.skipper")
        for before, after in itertools.pairwise(done):
            assert after["start"] >= before["end"], (before, after)  # never twice at once
        skipped = {
            at: why
            for at, why in (await missed(taskbus, "user.skipper")).items()
            if why.startswith("overlap: skipped, run ")
        }
        assert len(skipped) >= 2, await missed(taskbus, "user.skipper")
        not_run = [r for r in runs if (r["error_message"] or "").startswith("not run: skipped")]
        assert {datetime.fromisoformat(r["scheduled_at"]) for r in not_run} == set(skipped)
        assert all(why.endswith(" still running") for why in skipped.values())

        # buffer_one: three triggers while the first runs: the second is buffered and runs
        # once, after the first; the third is skipped (buffer full)
        await taskbus.create(
            "user.buffered",
            STAMP,
            "@yearly",
            config={"stamps": stamps, "seconds": 2.0},
            run_policy={"overlap": "buffer_one"},
        )
        first = await taskbus.trigger("user.buffered")  # answered once dispatched
        second = await taskbus.trigger("user.buffered")
        third = await taskbus.trigger("user.buffered")
        await settled(taskbus, "user.buffered", 3)
        done = ran(read_stamps(stamps), "user.buffered")
        assert len(done) == 2, done  # the first and the buffered one, once each
        assert done[1]["start"] >= done[0]["end"]
        assert (await execution(taskbus, first))["success"] is True
        assert (await execution(taskbus, second))["success"] is True
        skipped_third = await execution(taskbus, third)
        assert skipped_third["success"] is False
        assert "overlap: buffer full" in skipped_third["error_message"]

        # cancel_other: a plain run (a sleep that never looks at its context) is stopped by
        # its executor, and the new fire runs once it ended
        await taskbus.create(
            "user.latest",
            STAMP,
            "@yearly",
            config={"stamps": stamps, "seconds": 120.0},
            run_policy={"overlap": "cancel_other"},
        )
        stuck = await taskbus.trigger("user.latest")
        await taskbus.update("user.latest", config={"stamps": stamps, "seconds": 0.5})
        latest = await taskbus.trigger("user.latest")
        await settled(taskbus, "user.latest", 2)
        cancelled = await execution(taskbus, stuck)
        assert cancelled["success"] is False
        assert "cancel_other" in cancelled["error_message"], cancelled
        newest = await execution(taskbus, latest)
        assert newest["success"] is True
        (only,) = ran(read_stamps(stamps), "user.latest")  # the stopped run never ended itself
        assert only["scheduled_at"] == newest["scheduled_at"]

        # the category limit: six tasks of 1.5 s triggered at once, on two processes that
        # would each run two at once
        names = [f"user.limited_{n}" for n in range(6)]
        for name in names:
            await taskbus.create(name, STAMP, "@yearly", config={"stamps": stamps, "seconds": 1.5})
        for name in names:
            await taskbus.trigger(name)
        for name in names:
            await settled(taskbus, name, 1)
        limited = [s for s in read_stamps(stamps) if s["task_id"] in names]
        assert len(limited) == 6
        assert most_at_once(limited) == LIMIT, limited
        assert len({s["pid"] for s in limited}) == 2  # both processes ran some
