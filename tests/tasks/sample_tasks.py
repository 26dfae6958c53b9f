"""Task classes for the registry's discovery tests (imported by name, not collected)."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any

from tasks import BaseTask, TaskContext, TaskOptions, TaskResult
from tasks.maintenance import LogCleanup  # imported, not defined here: not discovered

__all__ = ["Echo", "LogCleanup", "Nightly", "Reporting"]


class Reporting(BaseTask):
    """Abstract: a base for report tasks, skipped by discovery."""

    category = "user"

    @abstractmethod
    def render(self) -> str: ...

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok(text=self.render())


@dataclass(frozen=True)
class EchoOptions(TaskOptions):
    text: str = "hello"


class Echo(Reporting):
    """A user task class without a task id: created over the bus under many ``user.*`` ids."""

    Options = EchoOptions

    def render(self) -> str:
        return "echo"


class Nightly(BaseTask):
    """A code-defined agency task."""

    task_id = "agency.nightly"
    default_schedule = "@daily"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok()
