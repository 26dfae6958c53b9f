"""The tasks branch of taskbus's exception hierarchy (STYLE item 8)."""

from __future__ import annotations

from config.errors import TaskbusError


class TaskDefinitionError(TaskbusError, ValueError):
    """A task class breaks the task interface; the message names the class and what is wrong."""


class OptionsError(TaskDefinitionError):
    """A task's options do not fit its ``Options``; ``key`` is ``options.<name>``.

    Values are not shown: options may hold secrets.
    """

    def __init__(self, key: str, problem: str, *, task: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.task = task
        prefix = f"task {task}: " if task else ""
        super().__init__(f"{prefix}{key}: {problem}")


class UnknownTaskClass(TaskDefinitionError, LookupError):
    """No registered class has this key (``module:qualname``) or task id."""


class TaskPermissionError(TaskbusError, PermissionError):
    """A task may not be created, deleted or run this way (its category forbids it)."""


class TaskUsageError(TaskbusError, ValueError):
    """A task used its API wrongly: progress out of 0..1, result data that is not plain..."""


class TaskCancelled(TaskbusError):
    """Raised by ``TaskContext.check_cancelled()`` once the run is cancelled (timeout, shutdown)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"task cancelled: {reason}")
