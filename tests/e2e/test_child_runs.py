"""Child runs and queries with real processes (issue 15, part 3): ``taskbus up`` with no user
nor agency executor, and one executor process of each, so that a parent's two children run in
two other processes. A parent spawns a user child and an agency child, the agency one fails,
the parent catches ``ChildFailed`` and names both; a parent cancelled while its children wait
takes them along (``scheduler.run.tree`` shows all three cancelled); a query is answered by the
live run looping in a step, then, once it suspended, from the answers it stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bus import KeysDirectory
from config import load_settings
from taskbus import RemoteError
from taskbus.client import TaskbusClient
from tasks.permissions import CHILD_MARK
from tests.e2e.child_run_tasks import STOP
from tests.e2e.system import (
    DEADLINE_S,
    TASKS,
    Child,
    actor,
    environment,
    history,
    terminate,
    until,
    up,
)

CHILD_TASKS = "tests.e2e.child_run_tasks"
pytestmark = pytest.mark.timeout(240)


@dataclass
class System:
    taskbus: TaskbusClient
    markers: Path
    user: Child
    agency: Child


@asynccontextmanager
async def running(tmp_path: Path) -> AsyncIterator[System]:
    """``up`` without the user and agency executors, and one process for each of them."""
    home = tmp_path / "home"
    KeysDirectory(home / "keys").identity_keypair("executor-agency", create=True)
    env = environment(
        home,
        TASKBUS_CATEGORIES__USER__ENABLED="false",
        TASKBUS_CATEGORIES__AGENCY__ENABLED="false",
        TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}", "{CHILD_TASKS}"]',
        TASKBUS_SCHEDULER__DEFAULT_RETRY_COUNT="0",  # a failed child fails its run at once
    )
    run_here = {
        **env,
        "TASKBUS_CATEGORIES__USER__ENABLED": "true",
        "TASKBUS_CATEGORIES__AGENCY__ENABLED": "true",
    }
    markers = tmp_path / "markers"
    markers.mkdir()
    system = await up(env)
    user = await actor(run_here, "executor-user")
    agency = await actor(run_here, "executor-agency")
    try:
        async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
            await taskbus.stats(wait_s=DEADLINE_S)
            yield System(taskbus, markers, user, agency)
    finally:
        for child in (agency, user, system):
            await terminate(child)


async def _finished(taskbus: TaskbusClient, task_id: str) -> dict[str, Any]:
    """The run's last attempt, once it has an outcome that is not a suspension."""
    last: dict[str, Any] = {}

    async def settled() -> bool:
        nonlocal last
        runs = await history(taskbus, task_id)
        if not runs:
            return False
        last = runs[0]
        return last["success"] is not None and "suspended" not in (last.get("result") or {})

    async def shown() -> object:
        return await history(taskbus, task_id)

    await until(settled, f"a final outcome of {task_id}", shown)
    return last


def _states(node: dict[str, Any]) -> dict[str, str]:
    """Every run of a ``scheduler.run.tree`` reply by its spawn key (the root's: ``root``)."""
    run = node["run"]
    found = {run.get("spawn_key") or "root": run["state"]}
    for child in node["children"]:
        found.update(_states(child))
    return found


async def test_an_agency_parent_catches_its_failed_agency_child_and_gets_its_user_one(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as system:
        taskbus = system.taskbus
        # A code-defined agency task: it spawns an agency child and a user one.
        await taskbus.update("agency.e2e_parent", config={"marker_dir": str(system.markers)})
        started = await taskbus.start("agency.e2e_parent")
        last = await _finished(taskbus, "agency.e2e_parent")
        tree = await taskbus.run_tree(started.run)
        user_pid, agency_pid = system.user.pid, system.agency.pid

    assert last["success"] is True, last
    children = last["result"]["children"]
    a, b = children["a"], children["b"]
    assert a["task_id"].startswith(f"user{CHILD_MARK}"), children
    assert a["result"]["note"] == "a"
    assert a["result"]["category"] == "user"
    assert a["result"]["pid"] == user_pid  # the user executor's process ran it
    assert b["task_id"].startswith(f"agency{CHILD_MARK}"), children
    assert b["caught"]["key"] == "b"
    assert b["caught"]["state"] == "failed"
    assert "agency child b was told to fail" in b["caught"]["error"], b
    assert [p.name for p in system.markers.glob("agency-child-*")] == [
        f"agency-child-{b['task_id']}-{agency_pid}"
    ]
    assert tree["run"]["run_key"] == started.run
    assert _states(tree) == {"root": "succeeded", "a": "succeeded", "b": "failed"}
    assert {child["run"]["run_key"] for child in tree["children"]} == {a["run"], b["run"]}
    assert {child["run"]["parent_key"] for child in tree["children"]} == {started.run}


async def test_cancelling_a_parent_cancels_its_waiting_children(tmp_path: Path) -> None:
    async with running(tmp_path) as system:
        taskbus = system.taskbus
        started = await taskbus.start("agency.e2e_parent_of_waiters")
        tree: dict[str, Any] = {}

        async def tree_is(states: dict[str, str]) -> bool:
            nonlocal tree
            tree = await taskbus.run_tree(started.run)
            return _states(tree) == states

        async def shown() -> object:
            return tree

        waiting = {"root": "waiting", "first": "waiting", "second": "waiting"}
        await until(lambda: tree_is(waiting), "the parent and its children waiting", shown)
        await taskbus.cancel_run(started.run, reason="not needed any more")
        cancelled = {"root": "cancelled", "first": "cancelled", "second": "cancelled"}
        await until(lambda: tree_is(cancelled), "the parent and its children cancelled", shown)
        for child in tree["children"]:
            with pytest.raises(RemoteError, match="is cancelled"):  # ended for good
                await taskbus.signal(child["run"]["run_key"], "go")


async def test_a_query_is_answered_live_then_from_the_stored_answers(tmp_path: Path) -> None:
    async with running(tmp_path) as system:
        taskbus = system.taskbus
        await taskbus.create(
            "user.looping",
            f"{CHILD_TASKS}:Looping",
            "@yearly",
            config={"marker_dir": str(system.markers)},
        )
        started = await taskbus.start("user.looping")
        replies: list[Any] = []

        async def answered_live() -> bool:
            try:
                reply = await taskbus.query(started.run, "progress")
            except RemoteError as refused:  # not live yet, nothing stored yet
                replies.append(str(refused))
                return False
            replies.append(reply)
            answer = reply["answer"]
            return bool(reply["live"] and answer["phase"] == "looping" and answer["rounds"] > 0)

        async def shown() -> object:
            return replies[-3:]

        await until(answered_live, "a live answer from the looping run", shown)
        live = replies[-1]
        assert live["answer"]["pid"] == system.user.pid

        (system.markers / STOP).touch()  # the loop ends; the run waits for go, then suspends

        async def suspended() -> bool:
            runs = await taskbus.runs("user.looping")
            return any(run["run_key"] == started.run and run["state"] == "waiting" for run in runs)

        await until(suspended, "the run suspended, waiting for go")
        stored = await taskbus.query(started.run, "progress")
        assert stored["live"] is False, stored
        assert stored["answer"]["phase"] == "waiting for go", stored
        assert stored["answer"]["rounds"] >= live["answer"]["rounds"]

        await taskbus.signal(started.run, "go")
        last = await _finished(taskbus, "user.looping")
        assert last["success"] is True, last
        final = await taskbus.query(started.run, "progress")
        assert final["live"] is False, final
        assert final["answer"]["phase"] == "done", final  # stored as it finished
        with pytest.raises(RemoteError, match="no stored answer"):
            await taskbus.query(started.run, "no-such-query")
