"""The agent example of docs/runs.md, ``examples/reflection.py``, run as printed on a real
``taskbus up``: it collects in a step, has a child run draft the summary, answers ``progress``
while it waits for the user's approval (holding no executor slot), takes a ``note`` through its
handler, and keeps the approved summary."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from config import load_settings
from taskbus.client import TaskbusClient
from tests.e2e.system import DEADLINE_S, TASKS, environment, history, terminate, until, up

pytestmark = pytest.mark.timeout(180)


async def test_the_reflection_example_waits_for_approval_then_keeps_the_summary(
    tmp_path: Path,
) -> None:
    notes, out = tmp_path / "notes", tmp_path / "out"
    notes.mkdir()
    out.mkdir()
    (notes / "1.txt").write_text("walked by the river\nit rained")
    (notes / "2.txt").write_text("called Ana")
    env = environment(
        tmp_path / "home",
        TASKBUS_SCHEDULER__TASK_MODULES=f'["{TASKS}", "examples.reflection"]',
    )
    system = await up(env)
    async with TaskbusClient.connect(load_settings(environ=env)) as taskbus:
        await taskbus.stats(wait_s=DEADLINE_S)
        await taskbus.create(
            "user.reflect",
            "examples.reflection:NightlyReflection",
            "0 23 * * *",
            config={"notes_dir": str(notes), "out_dir": str(out)},
        )
        started = await taskbus.start("user.reflect")

        async def run() -> dict[str, Any]:
            reply = await taskbus.ask("scheduler.run.list", {"task_id": "user.reflect"})
            return next((r for r in reply["runs"] if r["run_key"] == started.run), {})

        async def waiting() -> bool:
            return (await run()).get("state") == "waiting"

        await until(waiting, "the draft waiting for approval", run)
        asked = await taskbus.query(started.run, "progress")  # from the answers it stored
        tree = await taskbus.run_tree(started.run)
        await taskbus.signal(started.run, "note", "remember the milk")
        await taskbus.signal(started.run, "approve", {"edit": "A good day."})

        async def done() -> bool:
            return (await run()).get("state") == "succeeded"

        await until(done, "the summary kept", run)
        last = (await history(taskbus, "user.reflect"))[0]
        shown = await taskbus.run(last["execution_id"])
    await terminate(system)

    kept = Path(last["result"]["path"])
    assert kept.parent == out
    assert await asyncio.to_thread(kept.read_text) == (
        "Today, 2 notes:\n- walked by the river\n- called Ana\n\nA good day.\n"
    )
    assert asked == {"answer": {"phase": "waiting for approval"}, "live": False}
    [child] = tree["children"]
    assert child["run"]["spawn_key"] == "draft"
    assert child["run"]["state"] == "succeeded"
    steps = [step["name"] for step in shown["steps"]]
    assert {"collect", "spawn:draft", "keep"} <= set(steps), steps
    assert steps.count("collect") == 1  # collected once, though the run ran three times
    assert steps.count("spawn:draft") == 1  # and drafted by one child run
    logged = [line["message"] for line in shown["run"]["logs"]]
    assert any("remember the milk" in line for line in logged), logged
