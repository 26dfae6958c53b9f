"""What ``TaskbusClient.create_many`` and ``apply`` return: each definition's result, and the plan
of an apply with each entry's result (docs/scheduling.md#batch-and-declarative-tasks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

ACTIONS = ("create", "update", "delete", "unchanged")
MAX_BATCH = 1_000  # definitions in one request (the scheduler's limit)
# A request's share of bus.max_message_bytes: its reply carries each stored task, a few hundred
# bytes more per item than the request, and must fit too.
REQUEST_SHARE = 3


def batches(
    items: Sequence[dict[str, Any]], *, count: int, max_bytes: int
) -> list[list[dict[str, Any]]]:
    """``items`` in order, in batches of at most ``count`` items and (but for a single item that
    is larger) ``max_bytes`` encoded."""
    found: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    size = 0
    for item in items:
        try:
            length = len(msgpack.packb(item))
        except (TypeError, ValueError, OverflowError):
            length = 0  # the bus refuses it, naming the field
        if current and (len(current) >= count or size + length > max_bytes):
            found.append(current)
            current, size = [], 0
        current.append(item)
        size += length
    if current:
        found.append(current)
    return found


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one definition was refused: ``code`` (``invalid``, ``exists``, ``denied``,
    ``not_found``, ``conflict``...) and ``reason`` in words."""

    code: str
    reason: str

    @classmethod
    def read(cls, error: Mapping[str, Any] | None) -> ItemError | None:
        return None if error is None else cls(str(error["code"]), str(error["reason"]))


@dataclass(frozen=True, slots=True, kw_only=True)
class Created:
    """One definition of a ``create_many``, in the order asked: ``ok`` with the stored ``task``
    (and the ``warnings`` of a class and options no executor could check), or its ``error``.
    ``task_id`` is the id asked (None when it was not text)."""

    task_id: str | None
    ok: bool
    task: dict[str, Any] | None = None
    error: ItemError | None = None
    warnings: tuple[str, ...] = ()

    @classmethod
    def read(cls, entry: Mapping[str, Any]) -> Created:
        task = entry.get("task")
        return cls(
            task_id=entry.get("task_id"),
            ok=bool(entry["ok"]),
            task=None if task is None else dict(task),
            error=ItemError.read(entry.get("error")),
            warnings=tuple(entry.get("warnings") or ()),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanEntry:
    """What ``apply`` does to one task: ``action`` (``create``, ``update`` with the fields that
    change in ``changes``, ``delete``, ``unchanged``). Once applied, ``ok`` (None on a dry run),
    the stored ``task`` of a create or update, or the ``error`` that refused it."""

    task_id: str
    action: str
    changes: tuple[str, ...] = ()
    ok: bool | None = None
    task: dict[str, Any] | None = None
    error: ItemError | None = None

    @classmethod
    def read(cls, entry: Mapping[str, Any]) -> PlanEntry:
        task = entry.get("task")
        ok = entry.get("ok")
        return cls(
            task_id=str(entry["task_id"]),
            action=str(entry["action"]),
            changes=tuple(entry.get("changes") or ()),
            ok=None if ok is None else bool(ok),
            task=None if task is None else dict(task),
            error=ItemError.read(entry.get("error")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ApplyPlan:
    """The plan of an ``apply``, in order (the list's tasks, then the deletes), how many of each
    action, and, unless ``dry_run``, how many entries ``failed``."""

    entries: tuple[PlanEntry, ...]
    dry_run: bool
    counts: dict[str, int] = field(default_factory=dict)
    failed: int = 0

    @classmethod
    def read(cls, reply: Mapping[str, Any]) -> ApplyPlan:
        return cls(
            entries=tuple(PlanEntry.read(entry) for entry in reply["plan"]),
            dry_run=bool(reply["dry_run"]),
            counts={str(k): int(v) for k, v in dict(reply.get("counts") or {}).items()},
            failed=int(reply.get("failed") or 0),
        )

    @property
    def changes(self) -> int:
        """The entries that change something (all but ``unchanged``)."""
        return sum(entry.action != "unchanged" for entry in self.entries)
