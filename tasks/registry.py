"""The task classes this process can run, found in configured modules and checked on entry."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterable

from tasks import _checks
from tasks.base import BaseTask
from tasks.errors import TaskDefinitionError, TaskPermissionError, UnknownTaskClass
from tasks.options import option_schema
from tasks.permissions import CODE_DEFINED, TaskPermissions, category_of, is_child_task

# The modules of taskbus's own tasks (``TaskRegistry.with_builtins``).
BUILTIN_MODULES = (
    "tasks.maintenance",
    "tasks.security",
    "tasks.agency",
    "tasks.reminders",
    "tasks.agent_runner",
)


class TaskRegistry:
    """Task classes by key (``module:qualname``, the stored ``task_class``) and by task id.

    Every class is checked when registered and refused with a TaskDefinitionError naming it and
    what is wrong. Registering the same class object again changes nothing.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, type[BaseTask]] = {}
        self._by_task_id: dict[str, type[BaseTask]] = {}
        self.permissions = TaskPermissions()

    @classmethod
    def with_builtins(cls) -> TaskRegistry:
        registry = cls()
        registry.discover(BUILTIN_MODULES)
        return registry

    def register(self, task_class: type[BaseTask]) -> type[BaseTask]:
        """Check and add ``task_class``; returns it, so this can be used as a decorator."""
        if not isinstance(task_class, type) or not issubclass(task_class, BaseTask):
            raise TaskDefinitionError(f"{task_class!r} is not a subclass of BaseTask")
        key = task_class.key()
        known = self._by_key.get(key)
        if known is task_class:
            return task_class
        problem = _checks.problem(task_class)
        if problem:
            raise TaskDefinitionError(f"task class {key}: {problem}")
        if known is not None:
            raise TaskDefinitionError(
                f"task class {key}: another class is registered under the same key"
            )
        task_id = task_class.task_id
        if task_id in self._by_task_id:
            raise TaskDefinitionError(
                f"task class {key}: task_id {task_id!r} is already defined by "
                f"{self._by_task_id[task_id].key()}"
            )
        self._by_key[key] = task_class
        if task_id:
            self._by_task_id[task_id] = task_class
        return task_class

    def discover(self, module_names: Iterable[str]) -> list[type[BaseTask]]:
        """Import each module and register the concrete BaseTask subclasses defined in it."""
        found: list[type[BaseTask]] = []
        for name in module_names:
            try:
                module = importlib.import_module(name)
            except Exception as error:
                raise TaskDefinitionError(f"cannot import task module {name!r}: {error}") from error
            classes = [
                value
                for value in vars(module).values()
                if isinstance(value, type)
                and issubclass(value, BaseTask)
                and value.__module__ == module.__name__
                and not inspect.isabstract(value)
            ]
            if not classes:
                raise TaskDefinitionError(f"task module {name!r} defines no concrete task class")
            found.extend(self.register(task_class) for task_class in classes)
        return found

    def get(self, task_class: str) -> type[BaseTask]:
        """The class registered under ``task_class`` (``module:qualname``)."""
        try:
            return self._by_key[task_class]
        except KeyError:
            known = ", ".join(sorted(self._by_key)) or "none"
            raise UnknownTaskClass(f"unknown task class {task_class!r}; known: {known}") from None

    def by_task_id(self, task_id: str) -> type[BaseTask]:
        """The code-defined class of ``task_id``."""
        try:
            return self._by_task_id[task_id]
        except KeyError:
            known = ", ".join(sorted(self._by_task_id)) or "none"
            raise UnknownTaskClass(
                f"no task class defines task_id {task_id!r}; code-defined: {known}"
            ) from None

    def code_defined(self) -> list[type[BaseTask]]:
        """Every class with a task_id, by task id."""
        return [self._by_task_id[task_id] for task_id in sorted(self._by_task_id)]

    def builtins(self) -> list[type[BaseTask]]:
        """The code-defined classes that ship with taskbus (in ``BUILTIN_MODULES``)."""
        return [c for c in self.code_defined() if c.__module__ in BUILTIN_MODULES]

    def catalogue(self, category: str) -> dict[str, dict[str, object]]:
        """The classes that run ``category``'s tasks, by key, each with its options' schema
        (``{"options": {name: {"type": "int", "default": 3}}}``, see ``option_schema``): what an
        executor of that category announces."""
        return {
            key: {"options": option_schema(cls.Options)}
            for key, cls in sorted(self._by_key.items())
            if cls.category == category
        }

    def category_of(self, task_id: str) -> str:
        """The category of a task id, from its prefix; TaskDefinitionError if it is not valid."""
        try:
            return category_of(task_id)
        except ValueError as error:
            raise TaskDefinitionError(str(error)) from None

    def resolve(self, task_id: str, task_class: str) -> type[BaseTask]:
        """The class that runs ``task_id`` stored with ``task_class``, if that is allowed.

        A code-defined class runs only under its own task_id, a code-defined category only with
        its code-defined class, and a class without a task_id only under ids of its category; a
        child run's task (``tasks.permissions.is_child_task``) runs any class of its category.
        """
        cls = self.get(task_class)
        category = self.category_of(task_id)
        if not is_child_task(task_id):  # a child: TaskPermissions.spawnable decided
            self._check_code_defined(cls, task_id, task_class, category)
        if cls.category != category:
            raise TaskPermissionError(
                f"task {task_id!r} cannot run {task_class}: that class is a {cls.category} task"
            )
        return cls

    @staticmethod
    def _check_code_defined(
        task_cls: type[BaseTask], task_id: str, task_class: str, category: str
    ) -> None:
        if task_cls.task_id and task_cls.task_id != task_id:
            raise TaskPermissionError(
                f"task {task_id!r} cannot run {task_class}: that class is the code-defined task "
                f"{task_cls.task_id!r}"
            )
        if category in CODE_DEFINED and task_cls.task_id != task_id:
            raise TaskPermissionError(
                f"task {task_id!r} cannot run {task_class}: {category} tasks run only their "
                "code-defined class"
            )

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, task_class: object) -> bool:
        return task_class in self._by_key
