"""What ``TaskbusClient.describe`` returns: a task's next fire times in its zone, with the DST
rule that moved any of them, and its recent actions with their reasons
(docs/scheduling.md#pausing-limited-runs-and-describe)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bus.envelope import Payload


def _instant(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


@dataclass(frozen=True, slots=True, kw_only=True)
class NextFireTime:
    """A fire at ``at`` (UTC), ``local`` in the task's zone; ``note`` says how a DST gap or fold
    decided it. ``at`` None: a wall time a ``dst_gap = "skip"`` task does not fire (``local``
    is then that naive wall time)."""

    at: datetime | None
    local: datetime
    note: str | None

    @classmethod
    def read(cls, entry: Payload) -> NextFireTime:
        local = _instant(entry["local"])
        assert local is not None
        note = entry.get("note")
        return cls(
            at=_instant(entry.get("at")), local=local, note=None if note is None else str(note)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskAction:
    """One recent action: ``ran``, ``running``, ``skipped``, ``blocked``, ``paused``, ``limited``
    or ``missed``, at the instant it concerns, and why. ``execution_id`` and ``attempt`` for a
    run; ``count`` and ``first_at`` for missed fires."""

    at: datetime
    action: str
    reason: str
    execution_id: str | None = None
    attempt: int | None = None
    count: int | None = None
    first_at: datetime | None = None

    @classmethod
    def read(cls, entry: Payload) -> TaskAction:
        at = _instant(entry["at"])
        assert at is not None
        return cls(
            at=at,
            action=str(entry["action"]),
            reason=str(entry["reason"]),
            execution_id=entry.get("execution_id"),
            attempt=entry.get("attempt"),
            count=entry.get("count"),
            first_at=_instant(entry.get("first_at")),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskDescription:
    """``scheduler.task.describe``'s answer. A paused or disabled task has no ``next`` fires; a
    task with ``max_runs`` lists at most the runs it has left (``max_runs - fire_count``)."""

    task_id: str
    timezone: str
    enabled: bool
    paused: bool
    note: str | None
    max_runs: int | None
    fire_count: int
    next: tuple[NextFireTime, ...]
    actions: tuple[TaskAction, ...]

    @classmethod
    def read(cls, reply: Payload) -> TaskDescription:
        note = reply.get("note")
        max_runs = reply.get("max_runs")
        return cls(
            task_id=str(reply["task_id"]),
            timezone=str(reply["timezone"]),
            enabled=bool(reply["enabled"]),
            paused=bool(reply["paused"]),
            note=None if note is None else str(note),
            max_runs=None if max_runs is None else int(max_runs),
            fire_count=int(reply["fire_count"]),
            next=tuple(NextFireTime.read(entry) for entry in reply["next"]),
            actions=tuple(TaskAction.read(entry) for entry in reply["actions"]),
        )
