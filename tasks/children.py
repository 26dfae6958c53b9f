"""Child runs: a run starts another task's run (``ctx.spawn``) and later takes its outcome
(``await handle.result()``, ``ctx.gather``), across attempts of either. The model:
docs/runs.md ("Child runs").

Starting a child is the step ``spawn:<key>`` of the parent run (a replay starts nothing new):
its work asks the executor-provided :class:`Spawner`. A child's outcome reaches the parent as
the internal signal ``child:<key>`` in its inbox (the scheduler puts it there when the child
ends); ``result()`` takes it as a signal wait does, so the parent suspends until it is there.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasks.errors import ChildFailed, TaskUsageError
from tasks.options import TaskOptions
from tasks.result import check_plain
from tasks.signals import CHILD_SIGNAL_PREFIX, MAX_SIGNAL_NAME_CHARS, UPDATE_SIGNAL_PREFIX

MAX_CHILD_KEY_CHARS = MAX_SIGNAL_NAME_CHARS - len(CHILD_SIGNAL_PREFIX)
ON_PARENT_CANCEL = ("cancel", "abandon")
CHILD_STATES = ("succeeded", "failed", "cancelled")


class Spawner(Protocol):
    """Starts child runs for one parent run (the executor gives the context one)."""

    async def spawn(
        self, *, key: str, task_class: str, config: dict[str, Any], on_parent_cancel: str
    ) -> dict[str, Any]:
        """Start (once per parent run and ``key``) a run of ``task_class`` with ``config``;
        ``{"task_id": <the child's task id>, "run": <its run key>}``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRun:
    """A child run started by ``ctx.spawn``: its ``key`` in the parent, ``task_id`` and ``run``
    key. ``await handle.result()`` is its result map once it has succeeded."""

    key: str
    task_id: str
    run: str
    _result_of: Callable[[str], Awaitable[dict[str, Any]]] | None = field(
        default=None, repr=False, compare=False
    )

    async def result(self) -> dict[str, Any]:
        """The child's result map once it has succeeded; ChildFailed if it failed or was
        cancelled. Kept as the parent's step ``signal:child:<key>#1`` (a replay returns it at
        once); while the child runs the parent waits in place up to ``suspend_after_s``, then
        suspends waiting for the signal ``child:<key>``."""
        if self._result_of is None:
            raise TaskUsageError(
                f"child run {self.key!r}: only a handle from ctx.spawn can wait for its result"
            )
        return await self._result_of(self.key)


def child_signal(key: str) -> str:
    """The internal signal that carries the outcome of the child ``key``."""
    return CHILD_SIGNAL_PREFIX + key


def is_reserved_signal(name: object) -> bool:
    """Whether ``name`` is an internal signal name (``child:*``, ``update:*``)."""
    return isinstance(name, str) and name.startswith((CHILD_SIGNAL_PREFIX, UPDATE_SIGNAL_PREFIX))


def check_child_key(key: object) -> str:
    """``key`` if it is printable text of 1..MAX_CHILD_KEY_CHARS characters; else
    TaskUsageError."""
    if (
        not isinstance(key, str)
        or not key
        or len(key) > MAX_CHILD_KEY_CHARS
        or not key.isprintable()
    ):
        shown = key[:40] if isinstance(key, str) else key
        raise TaskUsageError(
            f"a child run's key is printable text of 1..{MAX_CHILD_KEY_CHARS} characters, "
            f"not {shown!r}"
        )
    return key


def task_class_key(task_class: object) -> str:
    """``module:Qualname`` of a task class (a BaseTask subclass), or a key given as text."""
    if isinstance(task_class, type):  # the scheduler refuses a class that is no task's
        return f"{task_class.__module__}:{task_class.__qualname__}"
    if isinstance(task_class, str) and task_class and task_class.isprintable():
        return task_class
    raise TaskUsageError(
        f"spawn takes a BaseTask subclass or its key 'module:Qualname', not {task_class!r}"
    )


def child_config(options: object) -> dict[str, Any]:
    """A child's config map from ``options``: None, a map, or a TaskOptions instance."""
    if options is None:
        config: dict[str, Any] = {}
    elif isinstance(options, TaskOptions):
        config = dataclasses.asdict(options)
    elif isinstance(options, Mapping):
        config = dict(options)
    else:
        raise TaskUsageError(
            f"a child's options are a map or a TaskOptions, not {type(options).__name__}"
        )
    check_plain("options of the child", config)
    return config


def check_on_parent_cancel(value: object) -> str:
    if value not in ON_PARENT_CANCEL:
        allowed = ", ".join(ON_PARENT_CANCEL)
        raise TaskUsageError(f"on_parent_cancel is one of {allowed}, not {value!r}")
    return str(value)


def spawned(key: str, reply: object) -> tuple[str, str]:
    """(task_id, run) of a spawner's reply; TaskUsageError if it is not one."""
    if (
        not isinstance(reply, Mapping)
        or not isinstance(reply.get("task_id"), str)
        or not isinstance(reply.get("run"), str)
    ):
        raise TaskUsageError(f"child run {key!r}: the spawner answered {reply!r}, not a run")
    return reply["task_id"], reply["run"]


def child_outcome(key: str, payload: object) -> dict[str, Any]:
    """The result map of a succeeded child from its ``child:<key>`` signal's payload; else
    ChildFailed (failed, cancelled)."""
    if not isinstance(payload, Mapping) or payload.get("state") not in CHILD_STATES:
        raise TaskUsageError(f"child run {key!r}: its outcome is malformed: {payload!r}")
    state = payload["state"]
    if state != "succeeded":
        error = payload.get("error")
        raise ChildFailed(key, state, error if isinstance(error, str) else None)
    result = payload.get("result")
    return dict(result) if isinstance(result, Mapping) else {}
