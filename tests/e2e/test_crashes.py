"""Crashes with real processes: executors and schedulers SIGKILLed, everything restarted.

Every test runs ``taskbus up`` (the broker, over tcp+CURVE, and the encrypted store) in one
process and the actors that crash in processes of their own (``taskbus actor ...``), as a
service manager would run them; a TaskbusClient in this process asks the system what it did.
The tasks (``tests/e2e/crash_tasks.py``) return the pid of the process that ran them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from taskbus.client import TaskbusClient
from tests.bus.waits import eventually
from tests.e2e.crash_tasks import RELEASE
from tests.e2e.system import (
    DEADLINE_S,
    TASKS,
    actor,
    environment,
    execution,
    first_attempts,
    history,
    instant,
    missed,
    seconds_between,
    sigkill,
    terminate,
    until,
    up,
)

GRACE_S = 1.0  # misfire grace of the interval tasks: later than this is a missed fire
DOWN_S = 5.0  # how long no scheduler runs in the scheduler crash test
pytestmark = pytest.mark.timeout(180)


# ---------------------------------------------------------------- 1. two categories


async def test_two_categories_run_in_their_own_executor_processes(tmp_path: Path) -> None:
    """The scheduler in ``up`` dispatches over tcp+CURVE to the ``user`` and ``maintenance``
    executors, each in its own process; each run is stored with its executor's pid."""
    env = environment(
        tmp_path / "home",
        TASKBUS_CATEGORIES__USER__ENABLED="false",
        TASKBUS_CATEGORIES__MAINTENANCE__ENABLED="false",
    )
    system = await up(env)
    run_here = {**env, "TASKBUS_CATEGORIES__USER__ENABLED": "true"}
    users = await actor(run_here, "executor-user")
    run_here = {**env, "TASKBUS_CATEGORIES__MAINTENANCE__ENABLED": "true"}
    maintainers = await actor(run_here, "executor-maintenance")

    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)  # the scheduler in `up` leads
        await taskbus.create("user.once", f"{TASKS}:Pid", "@yearly")
        await taskbus.create("user.often", f"{TASKS}:Pid", "every 1s")
        triggered = {
            "user.once": await taskbus.trigger("user.once"),
            "maintenance.crash_probe": await taskbus.trigger("maintenance.crash_probe"),
        }

        async def finished() -> bool:
            runs = [await execution(taskbus, x) for x in triggered.values()]
            often = [r for r in await history(taskbus, "user.often") if r["success"] is not None]
            return all(r["success"] is not None for r in runs) and len(often) >= 2

        await until(finished, "both triggered runs and two fires of user.often stored")
        expected_pid = {"user.once": users.pid, "maintenance.crash_probe": maintainers.pid}
        for task_id, execution_id in triggered.items():
            runs = await history(taskbus, task_id)
            assert [r["execution_id"] for r in runs] == [execution_id]
            assert runs[0]["success"] is True, runs[0]
            assert runs[0]["result"]["pid"] == expected_pid[task_id]
            status = (await taskbus.status(task_id))["status"]
            assert (status["runs"], status["succeeded"], status["failed"]) == (1, 1, 0)
        often = [r for r in await history(taskbus, "user.often") if r["success"] is not None]
        assert {(r["success"], r["result"]["pid"]) for r in often} == {(True, users.pid)}
        assert max(first_attempts(often).values()) == 1
        assert system.pid not in {users.pid, maintainers.pid}

    await terminate(users)
    await terminate(maintainers)
    await terminate(system)


# ---------------------------------------------------------------- 2. an executor killed mid-task


async def test_a_run_whose_executor_is_killed_is_redelivered_and_stored_once(
    tmp_path: Path,
) -> None:
    """At least once: the run started in executor A, A was SIGKILLed, the broker redelivered the
    dispatch to executor B, which ran the task body again and stored the one result of that fire.

    So the body started twice (two marker files, one per process) but the store holds one
    execution for the fire, attempt 1, succeeded, by B: a redelivery is not a retry.
    """
    markers = tmp_path / "markers"
    markers.mkdir()
    env = environment(tmp_path / "home", TASKBUS_CATEGORIES__USER__ENABLED="false")
    run_here = {**env, "TASKBUS_CATEGORIES__USER__ENABLED": "true"}
    system = await up(env)
    first = await actor(run_here, "executor-user")

    def starts() -> list[str]:
        return sorted(p.name for p in markers.glob("start-*"))

    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        await taskbus.create(
            "user.held", f"{TASKS}:Held", "@yearly", config={"marker_dir": str(markers)}
        )
        execution_id = await taskbus.trigger("user.held")
        await eventually(lambda: len(starts()) == 1, "the run started in A", DEADLINE_S)
        assert starts()[0].startswith(f"start-{first.pid}-")

        await sigkill(first)
        second = await actor(run_here, "executor-user")  # as a service manager would
        await eventually(lambda: len(starts()) >= 2, "the run started again in B", DEADLINE_S)
        (markers / RELEASE).touch()

        async def stored() -> bool:
            return (await execution(taskbus, execution_id))["success"] is not None

        await until(stored, "the run's result stored")
        runs = await history(taskbus, "user.held")
        dead = await taskbus.ask("store.dead_letters", {"task_id": "user.held"})
        status = (await taskbus.status("user.held"))["status"]

    started_by = sorted(int(name.split("-")[1]) for name in starts())
    assert started_by == sorted([first.pid, second.pid])  # the body ran twice: at least once
    assert {(markers / name).read_text() for name in starts()} == {f"{execution_id} 1\n"}
    assert len(runs) == 1  # but one execution in the store
    (run,) = runs
    assert run["execution_id"] == execution_id
    assert run["retry_count"] == 0
    assert run["success"] is True, run
    assert run["result"]["pid"] == second.pid
    assert dead["dead_letters"] == []
    assert (status["runs"], status["succeeded"], status["failed"]) == (1, 1, 0)

    await terminate(second)
    await terminate(system)


# ---------------------------------------------------------------- 3. the scheduler killed


async def test_a_killed_scheduler_is_replaced_and_each_misfire_policy_holds(
    tmp_path: Path,
) -> None:
    """The only scheduler process is SIGKILLed; none runs for DOWN_S; a new one takes the lease
    and plans the fires missed meanwhile through each task's misfire policy: ``catch_up`` runs
    every missed instant once, ``run_once`` runs one for all of them, ``skip`` none, and every
    instant not run is recorded with its reason. No instant is recorded twice."""
    env = environment(tmp_path / "home")
    system = await up({**env, "TASKBUS_ENABLED": "false"})  # the broker and the store only
    executor = await actor(env, "executor-user")
    doomed = await actor(env, "scheduler")
    modes = {"user.skip": "skip", "user.once": "run_once", "user.catch": "catch_up"}

    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        leader = await taskbus.stats(wait_s=DEADLINE_S)
        assert leader["leader"].split(":")[1] == str(doomed.pid)
        for task_id, mode in modes.items():
            policy = {"mode": mode, "grace_s": GRACE_S, "catch_up_limit": 100}
            await taskbus.create(task_id, f"{TASKS}:Pid", "every 1s", misfire_policy=policy)

        async def succeeded_after(after: datetime, count: int) -> bool:
            for task_id in modes:
                done = [
                    r
                    for r in await history(taskbus, task_id)
                    if r["success"] and instant(r["scheduled_at"]) > after
                ]
                if len(done) < count:
                    return False
            return True

        await until(lambda: succeeded_after(datetime.min.replace(tzinfo=UTC), 2), "fires")
        await sigkill(doomed)
        killed = datetime.now(UTC)  # the dead scheduler fired nothing after this
        restart = killed + timedelta(seconds=DOWN_S)
        await eventually(lambda: datetime.now(UTC) > restart, "the downtime", DOWN_S + 30)
        for task_id in modes:  # nobody fired while no scheduler ran
            assert max(first_attempts(await history(taskbus, task_id))) <= killed

        restarted = datetime.now(UTC)
        successor = await actor(env, "scheduler")

        async def successor_leads() -> bool:
            stats = await taskbus.stats(wait_s=DEADLINE_S)
            return bool(stats["leader"].split(":")[1] == str(successor.pid))

        await until(successor_leads, "the new scheduler leads")
        # Late by more than the grace when the successor took over: missed under every policy.
        down = seconds_between(killed, restarted - timedelta(seconds=GRACE_S))
        assert len(down) >= 3

        back = restarted + timedelta(seconds=1)

        async def state() -> object:
            return {
                task_id: [
                    (r["scheduled_at"], r["success"]) for r in await history(taskbus, task_id)
                ]
                for task_id in modes
            }

        await until(lambda: succeeded_after(back, 2), "every task firing again", state)

        async def settled() -> bool:  # what was fired up to then, the catch-up included
            for task_id in modes:
                for run in await history(taskbus, task_id):
                    if instant(run["scheduled_at"]) <= back and run["success"] is None:
                        return False
            return True

        await until(settled, "every run fired before the new scheduler's first fires ended", state)
        await terminate(successor)
        runs = {task_id: await history(taskbus, task_id) for task_id in modes}
        not_run = {task_id: await missed(taskbus, task_id) for task_id in modes}

    for task_id in modes:
        fired = first_attempts(runs[task_id])
        assert [t for t, n in fired.items() if n > 1] == []  # no instant fired twice
        assert all(r["retry_count"] == 0 for r in runs[task_id])
        finished = [r for r in runs[task_id] if r["success"] is not None]
        assert {(r["success"], r["result"]["pid"]) for r in finished} == {(True, executor.pid)}
        # Every instant from the first fire to the last is accounted for: run, or recorded
        # as missed. Only the fire in flight when the scheduler died may be both (recorded as
        # fired, but its task's last fire not yet stored: the successor replans it).
        both = set(fired) & set(not_run[task_id])
        assert len(both) <= 1, (task_id, both)
        assert all(t <= killed for t in both), (task_id, both)
        accounted = sorted(set(fired) | set(not_run[task_id]))
        span = int((accounted[-1] - accounted[0]).total_seconds()) + 1
        assert len(accounted) == span, (task_id, accounted)

    catch, once, skip = (first_attempts(runs[t]) for t in ("user.catch", "user.once", "user.skip"))
    assert [catch[t] for t in down] == [1] * len(down)  # catch_up: each missed instant ran once
    assert not set(down) & set(not_run["user.catch"])

    assert not set(down) & set(skip)  # skip: none ran, each recorded as skipped
    assert all(not_run["user.skip"][t].startswith("skipped: missed while down") for t in down)

    ran = set(down) & set(once)  # run_once: one run stands for all the missed instants
    targets = {not_run["user.once"][t] for t in down if t not in ran}
    assert len(ran) <= 1, ran
    assert len(targets) == 1, targets
    (reason,) = targets
    assert reason.startswith("coalesced into ")
    into = instant(reason.removeprefix("coalesced into "))
    assert once[into] == 1
    assert ran <= {into}

    await terminate(executor)
    await terminate(system)


# ---------------------------------------------------------------- 4. everything restarted


def _definition(task: dict[str, Any]) -> dict[str, Any]:
    """A task without its run state, which firing moves on."""
    state = ("last_run", "next_run", "updated_at", "accounted_through", "fire_count")
    return {k: v for k, v in task.items() if k not in state}


async def _snapshot(taskbus: TaskbusClient) -> dict[str, Any]:
    """Everything the store holds about the tasks, asked of the store alone."""
    reply = await taskbus.ask("store.task.list", {"limit": 1000})
    assert reply["next_cursor"] is None
    tasks = {task["task_id"]: task for task in reply["tasks"]}
    return {
        "tasks": tasks,
        "history": {task_id: await history(taskbus, task_id) for task_id in tasks},
        "missed": {
            task_id: await taskbus.ask("store.missed.list", {"task_id": task_id, "limit": 1000})
            for task_id in tasks
        },
        "dead": (await taskbus.ask("store.dead_letters", {"limit": 1000}))["dead_letters"],
    }


async def test_everything_stopped_and_started_again_keeps_tasks_and_history(
    tmp_path: Path,
) -> None:
    """All processes stopped by SIGTERM (exit 0) and started again on the same TASKBUS_HOME:
    the encrypted store gives back every task (schedule, zone, version, enabled flag, policies)
    and every execution exactly; the new scheduler finishes the runs left queued in the old
    broker and goes on firing."""
    env = environment(tmp_path / "home")
    broker_env = {**env, "TASKBUS_ENABLED": "false"}
    system = await up(broker_env)
    executor = await actor(env, "executor-user")
    scheduler = await actor(env, "scheduler")
    settings = load_settings(environ=env)

    async with TaskbusClient.connect(settings) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        await taskbus.create("user.tick", f"{TASKS}:Pid", "every 1s")
        await taskbus.create(
            "user.zoned",
            f"{TASKS}:Held",
            "30 2 * * *",
            timezone="Europe/Berlin",
            config={"marker_dir": str(tmp_path)},
            retry_policy={"max_attempts": 2},
        )
        await taskbus.update(
            "user.zoned",
            schedule="0 4 * * 1-5",
            misfire_policy={"mode": "catch_up", "catch_up_limit": 3},
            run_policy={"jitter_s": 5.0, "dst_fold": "both"},
        )
        await taskbus.create("user.off", f"{TASKS}:Pid", "every 1s", enabled=False)
        await taskbus.update("user.off", timezone="Asia/Tokyo")
        await taskbus.disable("maintenance.crash_probe")  # a code-defined task's flag

        async def ticked() -> bool:
            return len([r for r in await history(taskbus, "user.tick") if r["success"]]) >= 3

        await until(ticked, "user.tick fired")

    await terminate(executor)  # runs dispatched from now on wait in the broker
    async with TaskbusClient.connect(settings) as taskbus:

        async def queued() -> bool:
            return any(r["success"] is None for r in await history(taskbus, "user.tick"))

        await until(queued, "a fire of user.tick dispatched with no executor to run it")
        await terminate(scheduler)
        before = await _snapshot(taskbus)
    await terminate(system)  # the broker's queue is gone; the store has it all

    tasks = before["tasks"]
    assert tasks["user.zoned"]["version"] == 2
    assert tasks["user.zoned"]["timezone"] == "Europe/Berlin"
    assert tasks["user.off"]["enabled"] is False
    assert tasks["user.off"]["version"] == 2
    assert tasks["user.off"]["timezone"] == "Asia/Tokyo"
    assert tasks["maintenance.crash_probe"]["enabled"] is False
    assert len(before["history"]["user.tick"]) >= 4
    assert any(r["success"] is None for r in before["history"]["user.tick"])

    system = await up(broker_env)
    executor = await actor(env, "executor-user")
    async with TaskbusClient.connect(settings) as taskbus:
        assert await _snapshot(taskbus) == before  # exactly what was stored, nothing lost

        restarted = datetime.now(UTC)
        scheduler = await actor(env, "scheduler")
        old = {r["execution_id"]: r for r in before["history"]["user.tick"]}

        async def going_on() -> bool:
            runs = await history(taskbus, "user.tick")
            settled = all(r["success"] for r in runs if r["execution_id"] in old)
            new = [r for r in runs if r["success"] and instant(r["scheduled_at"]) > restarted]
            return settled and len(new) >= 2

        await until(going_on, "the old runs finished and user.tick firing again")
        after = await _snapshot(taskbus)

    assert {k: _definition(t) for k, t in after["tasks"].items()} == {
        k: _definition(t) for k, t in tasks.items()
    }
    for task_id, runs in before["history"].items():
        now = {r["execution_id"]: r for r in after["history"][task_id]}
        for run in runs:  # every execution kept; a queued one finished by the new system
            kept = now[run["execution_id"]]
            if run["success"] is None and task_id.startswith("user."):
                assert kept["success"] is True
                assert {k: kept[k] for k in ("task_id", "scheduled_at", "retry_count")} == {
                    k: run[k] for k in ("task_id", "scheduled_at", "retry_count")
                }
            else:
                assert kept == run
    assert after["history"]["user.off"] == []  # disabled: never fired, not after the restart
    assert after["history"]["user.zoned"] == []
    tick = first_attempts(after["history"]["user.tick"])
    assert [t for t, n in tick.items() if n > 1] == []
    pids = {r["result"]["pid"] for r in after["history"]["user.tick"] if r["success"]}
    assert executor.pid in pids

    await terminate(scheduler)
    await terminate(executor)
    await terminate(system)
