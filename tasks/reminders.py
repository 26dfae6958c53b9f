"""Built-in user task: a reminder published on the bus when it fires.

The class an application (or its agent) schedules when it wants to be told at a time, without
writing a task class: "reflect every night at 23:00" is a ``user.reflect`` task of this class,
and the agent subscribes to its topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.options import TaskOptions, require_option
from tasks.result import TaskResult

_TOPIC_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._-")


@dataclass(frozen=True)
class ReminderOptions(TaskOptions):
    message: str = ""
    topic: str = "user.reminder"

    def __post_init__(self) -> None:
        require_option(isinstance(self.message, str), "message", "text")
        require_option(len(self.message) <= 4096, "message", "at most 4096 characters")
        require_option(
            isinstance(self.topic, str)
            and self.topic.startswith("user.")
            and set(self.topic) <= _TOPIC_CHARS,
            "topic",
            "a topic under user. (lower case letters, digits, '.', '_', '-')",
        )


class Reminder(BaseTask):
    """Publishes ``{task_id, scheduled_at, message}`` on ``topic`` (default ``user.reminder``);
    the message is also the run's stored result."""

    category = "user"
    description = "publishes a reminder event on the bus"
    Options = ReminderOptions

    async def execute(self, ctx: TaskContext[ReminderOptions]) -> TaskResult:
        options = ctx.options
        await ctx.services.publish(
            options.topic,
            {
                "task_id": ctx.task_id,
                "scheduled_at": ctx.scheduled_at.isoformat(),
                "message": options.message,
            },
        )
        return TaskResult.ok(topic=options.topic, message=options.message)
