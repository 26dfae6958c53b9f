"""Built-in agent task: the default ``[agents] runner_class``, what every agent task runs.

An agent schedules its own work over ``agent.task.schedule`` (a title, an optional prompt and
payload); it never names a class. This runner logs what it was given and returns it as the run's
stored result; an application replaces it with its own runner (a task class of category
``agent`` with the same options) that hands the title and prompt to its agent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.options import TaskOptions, require_option
from tasks.result import TaskResult

MAX_TITLE_CHARS = 200
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True)
class AgentRunnerOptions(TaskOptions):
    title: str = ""
    prompt: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_option(
            0 < len(self.title) <= MAX_TITLE_CHARS and self.title.isprintable(),
            "title",
            f"printable text of 1 to {MAX_TITLE_CHARS} characters",
        )
        require_option(
            self.prompt is None or len(self.prompt) <= MAX_PROMPT_CHARS,
            "prompt",
            f"text of at most {MAX_PROMPT_CHARS} characters",
        )


class AgentRunner(BaseTask):
    """Logs the agent's title (and whether it has a prompt and payload) and returns
    ``{title, prompt, payload}`` as the run's result."""

    category = "agent"
    description = "an agent's own scheduled work: returns its title, prompt and payload"
    Options = AgentRunnerOptions

    async def execute(self, ctx: TaskContext[AgentRunnerOptions]) -> TaskResult:
        options = ctx.options
        ctx.log.info(
            "agent task %r due at %s (prompt: %s, payload keys: %s)",
            options.title,
            ctx.scheduled_at.isoformat(),
            "yes" if options.prompt else "no",
            ", ".join(sorted(options.payload)) or "none",
        )
        return TaskResult.ok(title=options.title, prompt=options.prompt, payload=options.payload)
