"""What each category allows: deletion, creation and a change of class over the bus, which class
may run an id. Only ``user.*`` tasks are deleted over the bus (agency tasks are defined in code
too: the scheduler has always refused to delete them, and now the rule says so in one place)."""

from __future__ import annotations

import pytest

from tasks import TaskPermissionError, TaskPermissions, TaskRegistry

PERMISSIONS = TaskPermissions()


@pytest.mark.parametrize(
    ("task_id", "deletable", "creatable"),
    [
        ("maintenance.log_cleanup", False, False),
        ("security.key_rotation", False, False),
        ("agency.daily_digest", False, False),
        ("user.mail_sync", True, True),
    ],
)
def test_the_rules_of_each_category(task_id: str, deletable: bool, creatable: bool) -> None:
    assert PERMISSIONS.deletable(task_id) is deletable
    assert PERMISSIONS.creatable_over_bus(task_id) is creatable
    assert PERMISSIONS.class_changeable(task_id) is creatable


def test_a_maintenance_task_cannot_be_deleted() -> None:
    with pytest.raises(TaskPermissionError) as caught:
        PERMISSIONS.check_deletable("maintenance.log_cleanup")
    assert isinstance(caught.value, PermissionError)
    assert str(caught.value) == (
        "task 'maintenance.log_cleanup' cannot be deleted: maintenance tasks are defined in "
        "code; they can be disabled, not deleted"
    )
    with pytest.raises(TaskPermissionError, match="agency tasks are defined in code"):
        PERMISSIONS.check_deletable("agency.daily_digest")
    PERMISSIONS.check_deletable("user.mail_sync")


def test_a_code_defined_task_keeps_its_class() -> None:
    with pytest.raises(TaskPermissionError) as caught:
        PERMISSIONS.check_class_changeable("security.key_rotation")
    assert str(caught.value) == (
        "task 'security.key_rotation': security tasks are defined in code; its task_class "
        "cannot change"
    )
    PERMISSIONS.check_class_changeable("user.mail_sync")


@pytest.mark.parametrize("task_id", ["maintenance.x", "security.x", "agency.x"])
def test_only_user_tasks_can_be_created_over_the_bus(task_id: str) -> None:
    with pytest.raises(TaskPermissionError) as caught:
        PERMISSIONS.check_creatable_over_bus(task_id)
    category = task_id.split(".", maxsplit=1)[0]
    assert str(caught.value) == (
        f"task {task_id!r} cannot be created over the bus: {category} tasks are defined in "
        "code; only user.* tasks can be created"
    )
    PERMISSIONS.check_creatable_over_bus("user.x")


@pytest.fixture
def registry() -> TaskRegistry:
    registry = TaskRegistry.with_builtins()
    registry.discover(["tests.tasks.sample_tasks"])
    return registry


def test_resolve_accepts_what_is_allowed(registry: TaskRegistry) -> None:
    assert registry.resolve("maintenance.log_cleanup", "tasks.maintenance:LogCleanup").task_id
    echo = registry.resolve("user.echo_a", "tests.tasks.sample_tasks:Echo")
    assert echo is registry.resolve("user.echo_b", "tests.tasks.sample_tasks:Echo")


@pytest.mark.parametrize(
    ("task_id", "task_class", "why"),
    [
        (
            "user.steal",
            "tasks.security:KeyRotation",
            "that class is the code-defined task 'security.key_rotation'",
        ),
        (
            "maintenance.log_cleanup",
            "tasks.maintenance:HealthCheck",
            "that class is the code-defined task 'maintenance.health_check'",
        ),
        (
            "agency.echo",
            "tests.tasks.sample_tasks:Echo",
            "agency tasks run only their code-defined class",
        ),
    ],
)
def test_resolve_refuses_a_class_the_task_may_not_run(
    registry: TaskRegistry, task_id: str, task_class: str, why: str
) -> None:
    with pytest.raises(TaskPermissionError) as caught:
        registry.resolve(task_id, task_class)
    assert str(caught.value) == f"task {task_id!r} cannot run {task_class}: {why}"


@pytest.mark.parametrize(
    ("parent", "child", "allowed"),
    [
        ("user.report", "user", True),
        ("user.report", "agency", False),  # a user's task may not run agency code as a child
        ("user.report", "security", False),
        ("agency.reflect", "agency", True),
        ("agency.reflect", "user", True),
        ("agency.reflect", "maintenance", False),
        ("maintenance.log_cleanup", "security", False),
    ],
)
def test_a_task_spawns_children_of_its_own_category_or_user_ones(
    parent: str, child: str, allowed: bool
) -> None:
    permissions = TaskPermissions()
    assert permissions.spawnable(parent, child) is allowed
    if allowed:
        permissions.check_spawnable(parent, child)
    else:
        refusal = f"cannot spawn a child run of category {child}"
        with pytest.raises(TaskPermissionError, match=refusal):
            permissions.check_spawnable(parent, child)


def test_a_child_runs_a_code_defined_class_of_its_category_and_no_other(
    registry: TaskRegistry,
) -> None:
    child = "maintenance.child_0123456789abcdef"
    assert registry.resolve(child, "tasks.maintenance:HealthCheck").task_id == (
        "maintenance.health_check"
    )
    with pytest.raises(TaskPermissionError, match="that class is a security task"):
        registry.resolve(child, "tasks.security:KeyRotation")
