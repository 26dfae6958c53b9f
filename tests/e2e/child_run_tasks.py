"""Task classes of the child-run and query tests with real processes (imported by name through
``scheduler.task_modules``, not collected): a parent that spawns a user child and an agency
child and catches the one that fails; a parent whose children wait until cancelled; a run that
loops in a step, answering a query about its progress, then waits for a signal."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks import BaseTask, ChildFailed, TaskContext, TaskOptions, TaskResult, query

STOP = "stop"  # the file that ends Looping's step
LOOP_LIMIT_S = 120.0  # a loop that is never stopped gives up


@dataclass(frozen=True)
class ChildOptions(TaskOptions):
    marker_dir: str = ""
    fail: bool = False
    note: str = ""


def mark(directory: str, name: str) -> None:
    (Path(directory) / f"{name}-{os.getpid()}").touch()


class UserChild(BaseTask):
    """Leaves a file, then answers its note and pid (or fails, if told to)."""

    category = "user"
    Options = ChildOptions

    async def execute(self, ctx: TaskContext[ChildOptions]) -> TaskResult:
        mark(ctx.options.marker_dir, f"user-child-{ctx.task_id}")
        if ctx.options.fail:
            raise RuntimeError(f"user child {ctx.options.note} was told to fail")
        return TaskResult.ok(note=ctx.options.note, category=self.category, pid=os.getpid())


class AgencyChild(BaseTask):
    """UserChild's agency twin: run by the agency category's executors. An agency class is
    code-defined (its own task id and schedule); as a child it runs under the child's id."""

    task_id = "agency.e2e_child"
    default_schedule = "@yearly"
    idle_only = False  # the tests load the machine: never deferred as not idle
    Options = ChildOptions

    async def execute(self, ctx: TaskContext[ChildOptions]) -> TaskResult:
        mark(ctx.options.marker_dir, f"agency-child-{ctx.task_id}")
        if ctx.options.fail:
            raise RuntimeError(f"agency child {ctx.options.note} was told to fail")
        return TaskResult.ok(note=ctx.options.note, category=self.category, pid=os.getpid())


@dataclass(frozen=True)
class ParentOptions(TaskOptions):
    marker_dir: str = ""


class Parent(BaseTask):
    """An agency task (code-defined: a task spawns children of its own category or user ones)
    that spawns a user child that succeeds and an agency child that fails; catches the failure
    and names both children in its result."""

    task_id = "agency.e2e_parent"
    default_schedule = "@yearly"
    idle_only = False
    Options = ParentOptions

    async def execute(self, ctx: TaskContext[ParentOptions]) -> TaskResult:
        directory = ctx.options.marker_dir
        good = await ctx.spawn(UserChild, {"marker_dir": directory, "note": "a"}, key="a")
        bad = await ctx.spawn(
            AgencyChild, {"marker_dir": directory, "note": "b", "fail": True}, key="b"
        )
        done = await good.result()
        try:
            await bad.result()
        except ChildFailed as failed:
            caught: dict[str, Any] = {
                "key": failed.key,
                "state": failed.state,
                "error": failed.error,
            }
        else:
            caught = {}
        return TaskResult.ok(
            children={
                "a": {"task_id": good.task_id, "run": good.run, "result": done},
                "b": {"task_id": bad.task_id, "run": bad.run, "caught": caught},
            }
        )


class WaitingChild(BaseTask):
    """Waits for a signal ``go`` that the test never sends."""

    category = "user"
    Options = ChildOptions

    async def execute(self, ctx: TaskContext[ChildOptions]) -> TaskResult:
        await ctx.wait_signal("go")
        return TaskResult.ok()


class WaitingAgencyChild(BaseTask):
    """WaitingChild in the agency category."""

    task_id = "agency.e2e_waiting_child"
    default_schedule = "@yearly"
    idle_only = False
    Options = ChildOptions

    async def execute(self, ctx: TaskContext[ChildOptions]) -> TaskResult:
        await ctx.wait_signal("go")
        return TaskResult.ok()


class ParentOfWaiters(BaseTask):
    """Spawns two children (user, agency) that wait for ever, and waits for both: only a cancel
    ends it."""

    task_id = "agency.e2e_parent_of_waiters"
    default_schedule = "@yearly"
    idle_only = False
    Options = ParentOptions

    async def execute(self, ctx: TaskContext[ParentOptions]) -> TaskResult:
        first = await ctx.spawn(WaitingChild, key="first")
        second = await ctx.spawn(WaitingAgencyChild, key="second")
        await ctx.gather(first, second)
        return TaskResult.ok()


class Looping(BaseTask):
    """Loops in a step until the file ``stop`` appears in ``marker_dir``, counting its rounds
    (``@query("progress")`` answers them), then waits for ``go`` and ends."""

    category = "user"
    Options = ParentOptions

    def __init__(self) -> None:
        super().__init__()
        self.phase = "starting"
        self.rounds = 0

    @query("progress")
    def progress(self, ctx: TaskContext[Any]) -> dict[str, Any]:
        return {"phase": self.phase, "rounds": self.rounds, "pid": os.getpid()}

    async def execute(self, ctx: TaskContext[ParentOptions]) -> TaskResult:
        stop = Path(ctx.options.marker_dir) / STOP

        async def loop() -> int:
            self.phase = "looping"
            deadline = asyncio.get_running_loop().time() + LOOP_LIMIT_S
            while not stop.exists() and asyncio.get_running_loop().time() < deadline:
                self.rounds += 1
                await asyncio.sleep(0.05)
            return self.rounds

        self.rounds = await ctx.step("loop", loop)  # a replay gets the kept count back
        self.phase = "waiting for go"
        await ctx.wait_signal("go")
        self.phase = "done"
        return TaskResult.ok(rounds=self.rounds)
