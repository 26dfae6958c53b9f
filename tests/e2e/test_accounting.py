"""Every due instant is accounted for across a gap in leadership, with real processes: a one-shot
and the first instant of a recurring task pass while no scheduler runs (``taskbus up`` stopped
cleanly, or the scheduler process SIGKILLed), and once a scheduler leads again each instant is run
or recorded as missed with its reason, as its misfire policy says; runs plus missed records equal
the due instants. And under load: 200 one-shots due over ten seconds, the scheduler killed in the
middle of them.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from taskbus.client import TaskbusClient
from tests.bus.waits import eventually
from tests.e2e.procs import taskbus as taskbus_cli
from tests.e2e.system import (
    DEADLINE_S,
    TASKS,
    Child,
    actor,
    environment,
    first_attempts,
    history,
    missed,
    sigkill,
    terminate,
    until,
    up,
)

pytestmark = pytest.mark.timeout(240)
GRACE_S = 1.0  # later than this is missed
EVERY_S = 10  # the recurring tasks' interval
MODES = ("skip", "run_once", "catch_up")


# ---------------------------------------------------------------- the two ways to stop leading


@dataclass
class CleanStop:
    """Everything in one ``taskbus up``, stopped by SIGTERM and started again."""

    env: dict[str, str]
    system: Child | None = None

    async def start(self) -> None:
        self.system = await up(self.env)

    async def stop(self) -> None:
        assert self.system is not None
        await terminate(self.system)

    async def end(self) -> None:
        await self.stop()


@dataclass
class Killed:
    """The broker and store in ``up``, an executor and the scheduler in processes of their own;
    the scheduler is SIGKILLed and a new one started, which waits for the dead one's lease."""

    env: dict[str, str]
    parts: tuple[Child, Child] | None = None
    scheduler: Child | None = None

    async def start(self) -> None:
        if self.parts is None:
            self.parts = (
                await up({**self.env, "TASKBUS_ENABLED": "false"}),
                await actor(self.env, "executor-user"),
            )
        self.scheduler = await actor(self.env, "scheduler")

    async def stop(self) -> None:
        assert self.scheduler is not None
        await sigkill(self.scheduler)

    async def end(self) -> None:
        assert self.scheduler is not None
        assert self.parts is not None
        await terminate(self.scheduler)
        for child in reversed(self.parts):
            await terminate(child)


Way = Callable[[dict[str, str]], CleanStop | Killed]
WAYS = [
    pytest.param(CleanStop, id="taskbus up stopped"),
    pytest.param(Killed, id="scheduler killed"),
]


@asynccontextmanager
async def leading(env: dict[str, str]) -> AsyncIterator[TaskbusClient]:
    """A client of the system, once a scheduler leads it."""
    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        yield taskbus


async def accounting(
    taskbus: TaskbusClient, every_s: dict[str, float]
) -> dict[str, tuple[list[datetime], dict[datetime, str]]]:
    """Per task: the instants of its first attempts (one per run) and its missed instants."""
    found = {}
    for task_id, step in every_s.items():
        runs = first_attempts(await history(taskbus, task_id))
        assert max(runs.values(), default=1) == 1, (task_id, runs)  # no instant run twice
        found[task_id] = (sorted(runs), await missed(taskbus, task_id, step))
    return found


def multiples(after: datetime, through: datetime, step: int) -> list[datetime]:
    """The instants of an ``every <step>s`` task in (after, through]."""
    first = int(after.timestamp()) // step * step + step
    last = int(through.timestamp()) // step * step
    return [datetime.fromtimestamp(s, UTC) for s in range(first, last + 1, step)]


def policy(mode: str, grace_s: float = GRACE_S) -> dict[str, Any]:
    return {"mode": mode, "grace_s": grace_s, "catch_up_limit": 100}


# ---------------------------------------------------------------- the first instants


@pytest.mark.parametrize("way", WAYS)
async def test_a_one_shot_and_a_first_instant_due_while_no_scheduler_leads_are_accounted_for(
    tmp_path: Path, way: Way
) -> None:
    """Created just after a :x0 second, so that the recurring tasks' first instant ``first`` is
    ten seconds off and the one-shots' ``at`` eight; stopped at once; started again once both have
    passed by more than the grace. The one-shot with the default grace (60 s) runs late;
    for the others, ``skip`` records each as skipped, ``run_once`` and ``catch_up`` run it."""
    env = environment(tmp_path / "home")
    system = way(env)
    await system.start()
    async with leading(env) as taskbus:
        await eventually(lambda: 0.2 <= time.time() % EVERY_S < 1.5, "a :x0 second", EVERY_S + 5)
        created = datetime.now(UTC)
        first = multiples(created, created + timedelta(seconds=EVERY_S), EVERY_S)[0]
        at = first - timedelta(seconds=2)
        every = f"every {EVERY_S}s"
        steps: dict[str, float] = {"user.late": 1}
        await taskbus.create("user.late", f"{TASKS}:Pid", f"at:{at.isoformat()}")
        for mode in MODES:
            for kind, schedule in (("once", f"at:{at.isoformat()}"), ("tick", every)):
                await taskbus.create(
                    f"user.{kind}_{mode}", f"{TASKS}:Pid", schedule, misfire_policy=policy(mode)
                )
            steps[f"user.once_{mode}"], steps[f"user.tick_{mode}"] = 1, EVERY_S
    await system.stop()
    stopped = datetime.now(UTC)
    assert stopped < at, f"stopping took until {stopped}, after the instant {at}: too slow"
    back = first + timedelta(seconds=GRACE_S + 2)
    await eventually(lambda: datetime.now(UTC) > back, "both instants passed", 30)

    await system.start()
    async with leading(env) as taskbus:
        through = datetime.now(UTC)  # every instant up to here is due, and a scheduler leads

        def due(task_id: str) -> list[datetime]:
            if task_id.startswith("user.tick"):
                return multiples(created, through, EVERY_S)
            return [at]

        async def accounted() -> bool:
            state = await accounting(taskbus, steps)
            return all(
                set(due(t)) <= set(runs) | set(not_run) for t, (runs, not_run) in state.items()
            )

        async def state() -> object:
            return await accounting(taskbus, steps)

        await until(accounted, "every due instant run or recorded as missed", state)
        found = await accounting(taskbus, steps)
        shown = taskbus_cli(env, "task", "missed", "user.once_skip")
    await system.end()

    assert shown.returncode == 0, shown.stderr
    header, row = shown.stdout.splitlines()
    assert header.split() == ["FIRST", "LAST", "FIRES", "REASON"]
    assert re.search(r"\s1\s+skipped: missed while down \(grace 1s exceeded\)$", row), row

    for task_id, (runs, not_run) in found.items():
        ran = [t for t in runs if t <= through]
        assert not set(ran) & set(not_run), (task_id, found[task_id])
        assert len(ran) + len(not_run) == len(due(task_id)), (task_id, found[task_id], through)
    assert found["user.late"] == ([at], {})  # within its 60 s grace: late, but run
    for kind, instant in (("once", at), ("tick", first)):
        runs, not_run = found[f"user.{kind}_skip"]
        assert instant not in runs
        assert not_run[instant] == "skipped: missed while down (grace 1s exceeded)"
        for mode in ("run_once", "catch_up"):
            runs, not_run = found[f"user.{kind}_{mode}"]
            assert instant in runs, (kind, mode, found)
            assert instant not in not_run, (kind, mode, found)


# ---------------------------------------------------------------- under load


async def test_two_hundred_one_shots_across_a_scheduler_kill_are_each_run_or_recorded(
    tmp_path: Path,
) -> None:
    """200 one-shots due one every 50 ms over ten seconds, a third of each misfire policy with a
    1 s grace; the scheduler is SIGKILLed three seconds into them and a new one started two seconds
    later. Each one-shot ends with exactly one run or one missed record, never both, never none."""
    env = environment(tmp_path / "home")
    system = Killed(env)
    await system.start()
    count = 200
    async with leading(env) as taskbus:
        start = datetime.now(UTC) + timedelta(seconds=15)  # after the 200 creates
        instants = {f"user.shot_{k}": start + timedelta(milliseconds=50 * k) for k in range(count)}
        for k, (task_id, at) in enumerate(instants.items()):
            mode = MODES[k % len(MODES)]
            await taskbus.create(
                task_id, f"{TASKS}:Pid", f"at:{at.isoformat()}", misfire_policy=policy(mode)
            )
        assert datetime.now(UTC) < start, "creating 200 tasks took longer than 15 s"
        kill_at = start + timedelta(seconds=3)
        await eventually(lambda: datetime.now(UTC) > kill_at, "three seconds into them", 30)
    await system.stop()
    killed = datetime.now(UTC)
    await eventually(
        lambda: datetime.now(UTC) > killed + timedelta(seconds=2), "two seconds down", 10
    )
    await system.start()
    steps = dict.fromkeys(instants, 1.0)
    async with leading(env) as taskbus:

        async def accounted() -> bool:
            state = await accounting(taskbus, steps)
            return all(instants[t] in {*runs, *not_run} for t, (runs, not_run) in state.items())

        async def unaccounted() -> object:
            state = await accounting(taskbus, steps)
            return sorted(t for t, (runs, not_run) in state.items() if not runs and not not_run)

        await until(accounted, "each one-shot run or recorded as missed", unaccounted)
        found = await accounting(taskbus, steps)
    await system.end()

    for task_id, (runs, not_run) in found.items():
        assert len(runs) + len(not_run) == 1, (task_id, runs, not_run)
        assert set(runs) | set(not_run) == {instants[task_id]}
    skipped = [t for t, (_, not_run) in found.items() if not_run]
    assert all(MODES[int(t.rsplit("_", 1)[1]) % 3] == "skip" for t in skipped), skipped
    assert skipped, "the kill made some one-shots miss their grace"
