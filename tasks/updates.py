"""Updates: a signal with a reply, sent to a live run (``scheduler.run.update``). A task's
``@update(name)`` method handles it; its validator (``@method.validator``) may refuse it before
anything is stored. The model: docs/runs.md ("Updates").

An accepted update is kept in the run's inbox as the signal ``update:<name>`` (so it is durable
and handled exactly once per run, as the step ``handled:<seq>``, by the signal-handler machinery
of ``tasks._durable``); the handler's return value (plain data, kept as that step's result) is
the reply. A refused one is answered with the validator's error and stored nowhere.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from tasks._marks import marked
from tasks.errors import TaskDefinitionError, TaskUsageError
from tasks.signals import MAX_SIGNAL_NAME_CHARS, UPDATE_SIGNAL_PREFIX

MAX_UPDATE_NAME_CHARS = MAX_SIGNAL_NAME_CHARS - len(UPDATE_SIGNAL_PREFIX)

Handler = Callable[..., Awaitable[Any]]
Validator = Callable[..., None]


def check_update_name(name: object, what: str = "an update's name") -> str:
    """``name`` if it is printable text of 1..MAX_UPDATE_NAME_CHARS characters; else
    TaskUsageError."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_UPDATE_NAME_CHARS
        or not name.isprintable()
    ):
        shown = name[:40] if isinstance(name, str) else name
        raise TaskUsageError(
            f"{what} is printable text of 1..{MAX_UPDATE_NAME_CHARS} characters, not {shown!r}"
        )
    return name


def update_signal(name: str) -> str:
    """The inbox signal name an accepted update ``name`` is kept as."""
    return UPDATE_SIGNAL_PREFIX + name


def is_update_signal(name: object) -> bool:
    return isinstance(name, str) and name.startswith(UPDATE_SIGNAL_PREFIX)


class UpdateMethod:
    """An ``@update(name)`` method of a task class: the handler, and its validator if one was
    declared with ``@method.validator``. Bound like the method it wraps (``task.method`` is the
    handler bound to ``task``)."""

    def __init__(self, name: str, handler: Handler) -> None:
        self.name = name
        self.handler = handler
        self.check: Validator | None = None
        self.__doc__ = handler.__doc__
        self.__wrapped__ = handler

    def __get__(self, obj: object, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return self.handler.__get__(obj, objtype)

    def validator(self, fn: Validator) -> Validator:
        """Mark ``def v(self, ctx, payload) -> None`` (sync, quick, no side effects) as the
        validator of this update: raising refuses the update (nothing is stored; the sender gets
        ``invalid`` with the exception's message)."""
        if not callable(fn) or inspect.iscoroutinefunction(fn):
            raise TaskDefinitionError(
                f"the validator of update {self.name!r} is a plain def method, not {fn!r}"
            )
        if self.check is not None:
            raise TaskDefinitionError(f"update {self.name!r} has two validators")
        self.check = fn
        return fn

    def validate(self, task: object, ctx: object, payload: Any) -> None:
        """Run the validator (if any) on ``payload``; its exception refuses the update."""
        if self.check is not None:
            self.check(task, ctx, payload)


def update(name: str) -> Callable[[Handler], UpdateMethod]:
    """Mark ``async def m(self, ctx, payload) -> plain data`` of a BaseTask subclass as the
    handler of the update ``name`` of a run of the task; ``@m.validator`` marks its validator."""
    check_update_name(name, "an update's name")

    def mark(fn: Handler) -> UpdateMethod:
        if not inspect.iscoroutinefunction(fn):
            raise TaskDefinitionError(f"update({name!r}) marks an async def method, not {fn!r}")
        return UpdateMethod(name, fn)

    return mark


def _scan(cls: type) -> dict[str, tuple[str, UpdateMethod]]:
    """``{update name: (attribute, UpdateMethod)}`` of ``cls`` (a subclass's attribute
    overrides its base's of the same name); TaskDefinitionError if two attributes of the class
    handle one update."""

    def name_of(value: object) -> str | None:
        return value.name if isinstance(value, UpdateMethod) else None

    attrs = marked(cls, name_of, "update", "methods")
    return {name: (attr, inspect.getattr_static(cls, attr)) for name, attr in attrs.items()}


def updates_of(cls: type) -> dict[str, UpdateMethod]:
    """``{update name: its UpdateMethod}`` of ``cls``'s ``@update`` methods."""
    return {name: method for name, (_, method) in _scan(cls).items()}


def update_handlers(cls: type) -> dict[str, str]:
    """``{"update:<name>": method name}``: the updates as signal handlers (tasks._durable)."""
    return {update_signal(name): attr for name, (attr, _) in _scan(cls).items()}


def validate_update(task: object, ctx: object, name: str, payload: Any) -> UpdateMethod:
    """The update ``name`` of ``task``, once its validator accepted ``payload``;
    TaskUsageError for a name the task has no update of; the validator's exception
    propagates (a refusal)."""
    methods = updates_of(type(task))
    method = methods.get(name) if isinstance(name, str) else None
    if method is None:
        known = ", ".join(sorted(methods)) or "none"
        raise TaskUsageError(f"{type(task).__qualname__} has no update {name!r} (it has: {known})")
    method.validate(task, ctx, payload)
    return method
