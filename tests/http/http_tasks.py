"""Task classes of the HTTP tests (imported by name through ``scheduler.task_modules``, not
collected)."""

from __future__ import annotations

from typing import Any

from tasks import BaseTask, StepRetry, TaskContext, TaskResult
from tasks.queries import query


class AwaitApproval(BaseTask):
    """Waits for the signal ``approve`` and succeeds with what it carried; ``@query("stage")``
    says where it is."""

    category = "user"

    def __init__(self) -> None:
        self.stage = "waiting"

    @query("stage")
    def where(self, ctx: TaskContext[Any]) -> dict[str, Any]:
        return {"stage": self.stage, "task": ctx.task_id}

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        approval: Any = await ctx.wait_signal("approve")
        self.stage = "approved"
        return TaskResult.ok(approval=approval)


class Fails(BaseTask):
    """Fails at once, in a step that stores its error (so that a retry runs it again)."""

    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        await ctx.step("boom", _boom, retry=StepRetry(attempts=1))
        return TaskResult.ok()


def _boom() -> None:
    raise RuntimeError("boom")
