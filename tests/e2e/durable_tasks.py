"""Task classes of the run-management CLI test (``tests/e2e/test_runs_cli.py``), imported by
name through ``scheduler.task_modules``, not collected."""

from __future__ import annotations

from typing import Any

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult


def asked() -> str:
    return "asked"  # a plain function: the step runs in the thread pool


class AwaitApproval(BaseTask):
    """A step, then waits for the signal ``approve`` (suspending the run after a second) and
    ends with what it carried."""

    category = "user"

    async def execute(self, ctx: TaskContext[TaskOptions]) -> TaskResult:
        await ctx.step("ask", asked)
        approval: Any = await ctx.wait_signal("approve")
        return TaskResult.ok(approval=approval)
