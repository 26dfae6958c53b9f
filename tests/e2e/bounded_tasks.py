"""A task class of the bounded-input tests (imported by name through ``scheduler.task_modules``,
not collected): its one option takes a map of any depth, so that how deep a stored definition
may nest is tested apart from which options a class takes."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult


@dataclass(frozen=True)
class DeepOptions(TaskOptions):
    d: dict = field(default_factory=dict)  # type: ignore[type-arg]


class Deep(BaseTask):
    category = "user"
    Options = DeepOptions

    async def execute(self, ctx: TaskContext[DeepOptions]) -> TaskResult:
        return TaskResult.ok(keys=len(ctx.options.d))
