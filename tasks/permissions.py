"""What each category allows over the bus, from the task id's prefix alone: the one owner of these
rules (the scheduler asks it before a create, a delete or a change of a task's class; the registry
before running a class under an id).

``maintenance.*``, ``security.*`` and ``agency.*`` are defined in code: over the bus they can be
updated, enabled, disabled and triggered, never created or deleted, and they keep their class.
Only ``user.*`` tasks are created, deleted and given another class over the bus.

``agent.<identity>.<name>`` tasks are an agent's own work: created only by ``agent.task.schedule``
(the scheduler names the task in the asker's namespace and gives it the configured runner class),
deleted by their owner like user tasks, and never given another class.

A running task may spawn child runs (``ctx.spawn``): of its own category, or ``user`` ones. A
child's task is ``<category>.child_<16 hex>``, made by the scheduler and owned by the parent
task's owner; it may run any class of its category, a code-defined one included (only a task of
that code-defined category, itself code, can have spawned it).
"""

from __future__ import annotations

from config.sections import check_task_id
from tasks.errors import TaskPermissionError

CODE_DEFINED = ("maintenance", "security", "agency")
BUS_DEFINED = ("user",)  # created, deleted and given another class over the bus
AGENT_CATEGORY = "agent"  # created by agent.task.schedule only; deleted by their owner
CHILD_MARK = ".child_"  # in the id of a child run's task: <category>.child_<16 hex>


def is_child_task(task_id: str) -> bool:
    """Whether ``task_id`` is a child run's task (the scheduler made it for a spawn)."""
    return CHILD_MARK in task_id


def category_of(task_id: str) -> str:
    """The category of a valid task id; ConfigError if the id is not one."""
    check_task_id(task_id)
    return task_id.split(".", 1)[0]


class TaskPermissions:
    """The category rules; ``check_*`` raise TaskPermissionError saying why."""

    def deletable(self, task_id: str) -> bool:
        return category_of(task_id) in (*BUS_DEFINED, AGENT_CATEGORY)

    def creatable_over_bus(self, task_id: str) -> bool:
        return category_of(task_id) in BUS_DEFINED

    def class_changeable(self, task_id: str) -> bool:
        return category_of(task_id) in BUS_DEFINED

    def spawnable(self, parent_task_id: str, child_category: str) -> bool:
        parent = category_of(parent_task_id)
        return child_category in BUS_DEFINED or child_category == parent

    def check_spawnable(self, parent_task_id: str, child_category: str) -> None:
        if not self.spawnable(parent_task_id, child_category):
            raise TaskPermissionError(
                f"task {parent_task_id!r} cannot spawn a child run of category "
                f"{child_category}: a task spawns children of its own category "
                f"({category_of(parent_task_id)}) or {_bus_defined()} ones"
            )

    def check_deletable(self, task_id: str) -> None:
        if not self.deletable(task_id):
            raise TaskPermissionError(
                f"task {task_id!r} cannot be deleted: {category_of(task_id)} tasks are defined in "
                "code; they can be disabled, not deleted"
            )

    def check_creatable_over_bus(self, task_id: str) -> None:
        if category_of(task_id) == AGENT_CATEGORY:
            raise TaskPermissionError(
                f"task {task_id!r} cannot be created with scheduler.task.*: agent tasks are "
                "created by agent.task.schedule, in the asker's namespace"
            )
        if not self.creatable_over_bus(task_id):
            raise TaskPermissionError(
                f"task {task_id!r} cannot be created over the bus: {category_of(task_id)} "
                f"tasks are defined in code; only {_bus_defined()} tasks can be created"
            )

    def check_class_changeable(self, task_id: str) -> None:
        if category_of(task_id) == AGENT_CATEGORY:
            raise TaskPermissionError(
                f"task {task_id!r}: agent tasks run the configured runner class "
                "([agents] runner_class); its task_class cannot change"
            )
        if not self.class_changeable(task_id):
            raise TaskPermissionError(
                f"task {task_id!r}: {category_of(task_id)} tasks are defined in code; its "
                "task_class cannot change"
            )


def _bus_defined() -> str:
    return ", ".join(f"{category}.*" for category in BUS_DEFINED)
