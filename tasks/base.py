"""The class every task derives from. The registry checks each subclass (``tasks.registry``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from tasks.context import TaskContext
from tasks.options import TaskOptions, read_options
from tasks.result import TaskResult

# Attributes BaseTask derives for a subclass that does not declare them.
_DERIVED = ("category", "idle_only")


class BaseTask(ABC):
    """A task: ``async execute(ctx)`` does one run and returns a TaskResult.

    ``task_id`` (``<category>.<name>``) is required for the code-defined categories
    (maintenance, security, agency); a user task class may leave it empty, declare
    ``category = "user"`` and run under any ``user.*`` id created over the bus. ``category``
    defaults to the id's first part; ``idle_only`` to True for agency tasks. ``Options`` is a
    frozen dataclass subclass of TaskOptions; ``timeout_s`` None means the scheduler's default.
    One instance serves one run.
    """

    task_id: ClassVar[str] = ""
    category: ClassVar[str] = ""
    default_schedule: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    timeout_s: ClassVar[float | None] = None
    allow_overlap: ClassVar[bool] = False
    idle_only: ClassVar[bool] = False
    _derived: ClassVar[frozenset[str]] = frozenset(_DERIVED)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        derived = set()
        if not _declares(cls, "category") and isinstance(cls.task_id, str) and cls.task_id:
            cls.category = cls.task_id.split(".", 1)[0]
            derived.add("category")
        if not _declares(cls, "idle_only"):
            cls.idle_only = cls.category == "agency"
            derived.add("idle_only")
        cls._derived = frozenset(derived)

    @classmethod
    def key(cls) -> str:
        """``module:qualname``: the ``task_class`` stored with every task of this class."""
        return f"{cls.__module__}:{cls.__qualname__}"

    @classmethod
    def read_options(
        cls, config: Mapping[str, object], *, task_id: str | None = None
    ) -> TaskOptions:
        """The options from a task's config map; OptionsError naming ``options.<key>``."""
        return read_options(cls.Options, config, task=task_id or cls.task_id or cls.key())

    @abstractmethod
    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        """One run. Raise to fail (the executor records the error), or return a result."""


def _declares(cls: type[BaseTask], name: str) -> bool:
    """Whether ``name`` is set by ``cls`` or a base below BaseTask, not derived by us."""
    for klass in cls.__mro__:
        if klass is BaseTask:
            return False
        if name in vars(klass) and name not in vars(klass).get("_derived", ()):
            return True
    return False
