"""``[agents]``: what an agent may schedule for itself over ``agent.task.schedule``.

Every agent task runs ``runner_class`` (no agent names code); an identity keeps at most
``max_tasks_per_identity`` of them, each firing at most once every ``min_interval_s`` seconds
(docs/scheduling.md#agents-schedule-their-own-work).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from config.bus import require_float, require_int
from config.errors import ConfigError

DEFAULT_RUNNER = "tasks.agent_runner:AgentRunner"
_CLASS_KEY = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
)
MAX_TASKS_PER_IDENTITY = 100_000
MAX_MIN_INTERVAL_S = 366 * 86_400.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSettings:
    """The agents' runner class (``module:qualname``, a task class of category ``agent``), and
    each identity's quota: how many agent tasks it may keep, and the shortest interval between
    two fires of one task's schedule."""

    runner_class: str = DEFAULT_RUNNER
    max_tasks_per_identity: int = 100
    min_interval_s: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.runner_class, str) or not _CLASS_KEY.fullmatch(self.runner_class):
            raise ConfigError(
                "agents.runner_class",
                self.runner_class,
                "a task class as 'module:ClassName' ('tasks.agent_runner:AgentRunner')",
            )
        require_int(
            "agents.max_tasks_per_identity", self.max_tasks_per_identity, 0, MAX_TASKS_PER_IDENTITY
        )
        require_float("agents.min_interval_s", self.min_interval_s, 1.0, MAX_MIN_INTERVAL_S)
