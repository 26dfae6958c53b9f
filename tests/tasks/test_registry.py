"""TaskRegistry: discovery, lookups, and one refusal per kind of broken task class."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from config.errors import ConfigError
from config.sections import check_task_id
from tasks import (
    BUILTIN_MODULES,
    BaseTask,
    TaskContext,
    TaskDefinitionError,
    TaskOptions,
    TaskRegistry,
    TaskResult,
    UnknownTaskClass,
)
from tests.tasks import sample_tasks

KEY = "tests.tasks.test_registry"


class Fine(BaseTask):
    task_id = "maintenance.fine"
    default_schedule = "every 5m"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok()


def refusal(task_class: type[BaseTask]) -> str:
    """The refusal's message after its prefix, which names the class."""
    with pytest.raises(TaskDefinitionError) as caught:
        TaskRegistry().register(task_class)
    prefix = f"task class {task_class.key()}: "
    assert str(caught.value).startswith(prefix)
    return str(caught.value).removeprefix(prefix)


# ---------------------------------------------------------------- what is accepted


def test_a_valid_class_is_registered_under_module_and_qualname() -> None:
    registry = TaskRegistry()
    assert registry.register(Fine) is Fine
    assert Fine.key() == f"{KEY}:Fine"
    assert registry.get(f"{KEY}:Fine") is Fine
    assert registry.by_task_id("maintenance.fine") is Fine
    assert f"{KEY}:Fine" in registry
    assert len(registry) == 1


def test_category_and_idle_only_are_derived_unless_declared() -> None:
    assert (Fine.category, Fine.idle_only) == ("maintenance", False)
    assert (sample_tasks.Nightly.category, sample_tasks.Nightly.idle_only) == ("agency", True)
    assert (sample_tasks.Echo.category, sample_tasks.Echo.idle_only) == ("user", False)

    class Busy(sample_tasks.Nightly):
        task_id = "agency.busy"
        idle_only = False

    class Moved(Fine):  # derived values are derived again, not inherited
        task_id = "security.moved"

    assert (Busy.category, Busy.idle_only) == ("agency", False)
    assert (Moved.category, Moved.idle_only) == ("security", False)


def test_registering_the_same_class_again_changes_nothing() -> None:
    registry = TaskRegistry()
    registry.register(Fine)
    registry.register(Fine)
    assert registry.code_defined() == [Fine]


def test_discover_registers_the_concrete_classes_defined_in_each_module() -> None:
    registry = TaskRegistry()
    found = registry.discover(["tests.tasks.sample_tasks"])
    assert sorted(c.key() for c in found) == [
        "tests.tasks.sample_tasks:Echo",
        "tests.tasks.sample_tasks:Nightly",
    ]
    assert registry.code_defined() == [sample_tasks.Nightly]
    assert registry.builtins() == []


def test_the_builtins() -> None:
    registry = TaskRegistry.with_builtins()
    registry.discover(["tests.tasks.sample_tasks"])
    shipped = {c.task_id: (c.key(), c.default_schedule, c.idle_only) for c in registry.builtins()}
    assert shipped == {
        "agency.daily_digest": ("tasks.agency:DailyDigest", "30 23 * * *", True),
        "maintenance.database_vacuum": ("tasks.maintenance:DatabaseVacuum", "0 4 * * 0", False),
        "maintenance.health_check": ("tasks.maintenance:HealthCheck", "*/5 * * * *", False),
        "maintenance.log_cleanup": ("tasks.maintenance:LogCleanup", "0 3 * * *", False),
        "security.key_rotation": ("tasks.security:KeyRotation", "0 5 1 * *", False),
    }
    assert [c.task_id for c in registry.code_defined()] == [
        "agency.daily_digest",
        "agency.nightly",
        "maintenance.database_vacuum",
        "maintenance.health_check",
        "maintenance.log_cleanup",
        "security.key_rotation",
    ]
    assert BUILTIN_MODULES == (
        "tasks.maintenance",
        "tasks.security",
        "tasks.agency",
        "tasks.reminders",
        "tasks.agent_runner",
    )
    assert registry.get("tasks.reminders:Reminder").category == "user"
    assert registry.get("tasks.agent_runner:AgentRunner").category == "agent"


def test_category_of_reads_the_prefix() -> None:
    registry = TaskRegistry()
    assert registry.category_of("user.mail.sync") == "user"
    assert registry.category_of("security.key_rotation") == "security"
    with pytest.raises(TaskDefinitionError, match=r"^config tasks.jobs.x='jobs.x': expected"):
        registry.category_of("jobs.x")


# ---------------------------------------------------------------- lookups that fail


def test_an_unknown_task_class_lists_the_known_ones() -> None:
    registry = TaskRegistry()
    registry.register(Fine)
    with pytest.raises(UnknownTaskClass) as caught:
        registry.get("tasks.maintenance:Nope")
    assert isinstance(caught.value, LookupError)
    assert str(caught.value) == f"unknown task class 'tasks.maintenance:Nope'; known: {KEY}:Fine"
    with pytest.raises(UnknownTaskClass) as caught:
        registry.by_task_id("maintenance.nope")
    assert str(caught.value) == (
        "no task class defines task_id 'maintenance.nope'; code-defined: maintenance.fine"
    )


def test_discover_names_a_module_that_does_not_import() -> None:
    with pytest.raises(TaskDefinitionError) as caught:
        TaskRegistry().discover(["tests.tasks.no_such_module"])
    assert str(caught.value) == (
        "cannot import task module 'tests.tasks.no_such_module': "
        "No module named 'tests.tasks.no_such_module'"
    )
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_discover_names_a_module_without_tasks() -> None:
    with pytest.raises(TaskDefinitionError) as caught:
        TaskRegistry().discover(["tasks.digest"])
    assert str(caught.value) == "task module 'tasks.digest' defines no concrete task class"


# ---------------------------------------------------------------- one refusal per mistake


def test_refuses_what_is_not_a_task_class() -> None:
    with pytest.raises(TaskDefinitionError) as caught:
        TaskRegistry().register(dict)  # type: ignore[arg-type]
    assert str(caught.value) == "<class 'dict'> is not a subclass of BaseTask"


def test_refuses_an_abstract_class() -> None:
    class Unfinished(BaseTask):
        task_id = "maintenance.unfinished"
        default_schedule = "@daily"

    assert refusal(Unfinished) == "is abstract: execute not implemented"  # type: ignore[type-abstract]


def test_refuses_a_synchronous_execute() -> None:
    class Blocking(BaseTask):
        task_id = "maintenance.blocking"
        default_schedule = "@daily"

        def execute(self, ctx: TaskContext[Any]) -> TaskResult:  # type: ignore[override]
            return TaskResult.ok()

    assert refusal(Blocking) == "execute must be an 'async def' (it is awaited by the executor)"


@pytest.mark.parametrize(
    "task_id", ["maintenance", "Maintenance.x", "cleanup.logs", "user.x.options"]
)
def test_refuses_an_invalid_task_id(task_id: str) -> None:
    class Named(BaseTask):
        default_schedule = "@daily"
        category = "maintenance"

        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    Named.task_id = task_id
    with pytest.raises(ConfigError) as checked:
        check_task_id(task_id)
    expected = checked.value.expected
    assert expected.startswith("a task id '<category>.<name>' in lowercase letters")
    assert refusal(Named) == f"task_id {task_id!r} is not valid: expected {expected}"


def test_refuses_a_category_that_does_not_match_the_task_id() -> None:
    class Confused(Fine):
        task_id = "maintenance.confused"
        category = "security"

    assert refusal(Confused) == (
        "category 'security' does not match task_id 'maintenance.confused'"
    )


def test_refuses_a_class_without_task_id_or_category() -> None:
    class Anonymous(BaseTask):
        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    assert refusal(Anonymous) == (
        "category '' is not one of maintenance, security, agency, user, agent (declare it, or set "
        "task_id)"
    )


def test_refuses_an_unknown_category() -> None:
    class Odd(BaseTask):
        category = "cron"

        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    assert refusal(Odd) == (
        "category 'cron' is not one of maintenance, security, agency, user, agent"
    )


@pytest.mark.parametrize("category", ["maintenance", "security", "agency"])
def test_refuses_a_code_defined_category_without_task_id(category: str) -> None:
    class Generic(BaseTask):
        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    Generic.category = category
    assert refusal(Generic) == (
        f"task_id is required: {category} tasks are code-defined, one class per task"
    )


def test_refuses_an_invalid_default_schedule() -> None:
    class Sometimes(Fine):
        task_id = "maintenance.sometimes"
        default_schedule = "61 * * * *"

    assert refusal(Sometimes) == (
        "default_schedule '61 * * * *' is not valid: minute '61' (field 1 of 5): "
        "out of range; minute takes 0-59"
    )


def test_refuses_a_code_defined_task_without_default_schedule() -> None:
    class Never(BaseTask):
        task_id = "security.never"

        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    assert refusal(Never) == (
        "default_schedule is required for the code-defined task 'security.never'"
    )


def test_a_user_class_without_task_id_needs_no_schedule() -> None:
    registry = TaskRegistry()
    registry.register(sample_tasks.Echo)
    assert registry.code_defined() == []


def test_refuses_options_that_are_not_task_options() -> None:
    @dataclass(frozen=True)
    class Loose:
        limit: int = 1

    class Odd(Fine):
        task_id = "maintenance.odd"
        Options = Loose  # type: ignore[assignment]

    assert refusal(Odd) == f"Options must be a subclass of TaskOptions, not {Loose!r}"


def test_refuses_options_that_are_not_a_dataclass() -> None:
    class Undecorated(TaskOptions):
        limit: int = 1

    class Odd(Fine):
        task_id = "maintenance.odd"
        Options = Undecorated

    assert refusal(Odd) == f"Options {Undecorated.__qualname__} is not a dataclass (decorate it)"


def test_refuses_an_option_without_default() -> None:
    @dataclass(frozen=True)
    class Required(TaskOptions):
        path: str

    class Odd(Fine):
        task_id = "maintenance.odd"
        Options = Required

    assert refusal(Odd) == (
        f"Options {Required.__qualname__}.path has no default: every option needs one"
    )


def test_refuses_an_option_of_an_unsupported_type() -> None:
    @dataclass(frozen=True)
    class Exotic(TaskOptions):
        names: set[str] = field(default_factory=set)

    class Odd(Fine):
        task_id = "maintenance.odd"
        Options = Exotic

    assert refusal(Odd) == (
        f"Options {Exotic.__qualname__}.names: type set[str] is not supported; use str, "
        "int, float, bool, list[T] or tuple[T, ...] of those, dict, or T | None"
    )


def test_refuses_an_option_whose_default_has_the_wrong_type() -> None:
    @dataclass(frozen=True)
    class Mistyped(TaskOptions):
        days: float = "30"  # type: ignore[assignment]

    class Odd(Fine):
        task_id = "maintenance.odd"
        Options = Mistyped

    assert refusal(Odd) == (
        f"Options {Mistyped.__qualname__}.days default '30': expected a number, not str"
    )


@pytest.mark.parametrize("timeout_s", [0, -1.0, float("nan"), float("inf"), True, "60"])
def test_refuses_a_timeout_that_is_not_positive(timeout_s: object) -> None:
    class Odd(Fine):
        task_id = "maintenance.odd"

    Odd.timeout_s = timeout_s  # type: ignore[assignment]
    assert refusal(Odd) == f"timeout_s must be None or a number > 0, not {timeout_s!r}"


def test_refuses_a_flag_that_is_not_a_bool() -> None:
    class Odd(Fine):
        task_id = "maintenance.odd"
        allow_overlap: ClassVar[bool] = 1  # type: ignore[assignment]

    assert refusal(Odd) == "allow_overlap must be True or False, not 1"


def test_refuses_a_second_class_with_the_same_task_id() -> None:
    class Twin(Fine):
        pass

    registry = TaskRegistry()
    registry.register(Fine)
    with pytest.raises(TaskDefinitionError) as caught:
        registry.register(Twin)
    assert str(caught.value) == (
        f"task class {Twin.key()}: task_id 'maintenance.fine' is already defined by {KEY}:Fine"
    )


def test_refuses_a_second_class_with_the_same_key() -> None:
    def make() -> type[BaseTask]:
        class Same(BaseTask):
            category = "user"

            async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
                return TaskResult.ok()

        return Same

    first, second = make(), make()
    registry = TaskRegistry()
    registry.register(first)
    with pytest.raises(TaskDefinitionError) as caught:
        registry.register(second)
    assert str(caught.value) == (
        f"task class {first.key()}: another class is registered under the same key"
    )
    assert registry.get(first.key()) is first
