"""What each category allows over the bus, from the task id's prefix alone: the one owner of these
rules (the scheduler asks it before a create, a delete or a change of a task's class; the registry
before running a class under an id).

``maintenance.*``, ``security.*`` and ``agency.*`` are defined in code: over the bus they can be
updated, enabled, disabled and triggered, never created or deleted, and they keep their class.
Only ``user.*`` tasks are created, deleted and given another class over the bus.
"""

from __future__ import annotations

from config.sections import check_task_id
from tasks.errors import TaskPermissionError

CODE_DEFINED = ("maintenance", "security", "agency")
BUS_DEFINED = ("user",)  # created, deleted and given another class over the bus


def category_of(task_id: str) -> str:
    """The category of a valid task id; ConfigError if the id is not one."""
    check_task_id(task_id)
    return task_id.split(".", 1)[0]


class TaskPermissions:
    """The category rules; ``check_*`` raise TaskPermissionError saying why."""

    def deletable(self, task_id: str) -> bool:
        return category_of(task_id) in BUS_DEFINED

    def creatable_over_bus(self, task_id: str) -> bool:
        return category_of(task_id) in BUS_DEFINED

    def class_changeable(self, task_id: str) -> bool:
        return category_of(task_id) in BUS_DEFINED

    def check_deletable(self, task_id: str) -> None:
        if not self.deletable(task_id):
            raise TaskPermissionError(
                f"task {task_id!r} cannot be deleted: {category_of(task_id)} tasks are defined in "
                "code; they can be disabled, not deleted"
            )

    def check_creatable_over_bus(self, task_id: str) -> None:
        if not self.creatable_over_bus(task_id):
            raise TaskPermissionError(
                f"task {task_id!r} cannot be created over the bus: {category_of(task_id)} "
                f"tasks are defined in code; only {_bus_defined()} tasks can be created"
            )

    def check_class_changeable(self, task_id: str) -> None:
        if not self.class_changeable(task_id):
            raise TaskPermissionError(
                f"task {task_id!r}: {category_of(task_id)} tasks are defined in code; its "
                "task_class cannot change"
            )


def _bus_defined() -> str:
    return ", ".join(f"{category}.*" for category in BUS_DEFINED)
