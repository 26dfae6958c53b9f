"""What each category allows, from the task id's prefix alone.

``maintenance.*`` and ``security.*`` exist only in code: they can be disabled, not deleted.
``agency.*`` is code-defined too (and idle-gated by default). Only ``user.*`` tasks can be
created over the bus, by the identities the executor's policy allows.
"""

from __future__ import annotations

from config.sections import check_task_id
from tasks.errors import TaskPermissionError

CODE_DEFINED = ("maintenance", "security", "agency")
UNDELETABLE = ("maintenance", "security")
BUS_CREATABLE = ("user",)


def category_of(task_id: str) -> str:
    """The category of a valid task id; ConfigError if the id is not one."""
    check_task_id(task_id)
    return task_id.split(".", 1)[0]


class TaskPermissions:
    """The category rules; ``check_*`` raise TaskPermissionError saying why."""

    def deletable(self, task_id: str) -> bool:
        return category_of(task_id) not in UNDELETABLE

    def creatable_over_bus(self, task_id: str) -> bool:
        return category_of(task_id) in BUS_CREATABLE

    def check_deletable(self, task_id: str) -> None:
        if not self.deletable(task_id):
            raise TaskPermissionError(
                f"task {task_id!r} cannot be deleted: {category_of(task_id)} tasks exist only "
                "in code; disable it instead"
            )

    def check_creatable_over_bus(self, task_id: str) -> None:
        if not self.creatable_over_bus(task_id):
            raise TaskPermissionError(
                f"task {task_id!r} cannot be created over the bus: {category_of(task_id)} "
                f"tasks are defined in code; only {', '.join(f'{c}.*' for c in BUS_CREATABLE)} "
                "tasks can be created"
            )
