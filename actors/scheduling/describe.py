"""``scheduler.task.describe``: a task's next fire times in its zone, DST gaps and folds marked
(``scheduler.describe``), and its recent actions with their reasons
(docs/scheduling.md#pausing-limited-runs-and-describe).

The actions merge the task's executions and its missed runs, latest first (an execution at its
scheduled instant, a missed range at its last instant):

- an execution: ``ran`` (reason: what made it and how it ended, ``schedule: succeeded``,
  ``retry: failed: <error>``), ``running`` (not ended yet, held by a gate included), or, for a
  fire a gate settled without running it, ``skipped`` (overlap) or ``blocked`` (a dependency);
- a missed run: ``paused``, ``skipped`` (overlap), ``blocked``, ``limited`` (max_runs) or
  ``missed`` (taskbus down, misfire policy), with ``count`` and ``first_at``.

A paused or disabled task lists no next fires; a task with ``max_runs`` lists at most the runs it
has left.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from actors.scheduling import definitions
from actors.scheduling.owners import Owners
from actors.scheduling.requests import task_id
from actors.scheduling.roster import Roster
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from bus.envelope import Payload
from config.sections import SchedulerSettings
from scheduler import Clock
from scheduler.describe import MAX_COUNT, NextFire, next_fires
from store import values
from store.errors import InvalidValue
from store.records import ExecutionRecord, MissedRunRecord

MAX_ACTIONS = 100


@dataclass(frozen=True, slots=True)
class DescribeAsk:
    task_id: str
    count: int
    actions: int


def _bounded(low: int, high: int) -> Any:
    def read(name: str, value: Any) -> int:
        return values.count(name, value, low=low, high=high)

    return read


@strict
def read_describe(request: Fields) -> DescribeAsk:
    return DescribeAsk(
        task_id=request.required("task_id", task_id),
        count=request.optional("count", _bounded(1, MAX_COUNT), 10),
        actions=request.optional("actions", _bounded(0, MAX_ACTIONS), 20),
    )


def execution_action(execution: ExecutionRecord) -> dict[str, Any]:
    made_by = execution.trigger or "schedule"
    error = execution.error_message or ""
    if execution.success is None:
        action, reason = "running", made_by
    elif execution.success:
        action, reason = "ran", f"{made_by}: succeeded"
    elif error.startswith("not run: skipped"):
        action, reason = "skipped", error
    elif error.startswith("blocked"):
        action, reason = "blocked", error
    else:
        action, reason = "ran", f"{made_by}: failed: {error}" if error else f"{made_by}: failed"
    return {
        "at": execution.scheduled_at.isoformat(),
        "action": action,
        "reason": reason,
        "execution_id": execution.execution_id,
        "attempt": execution.retry_count + 1,
    }


_MISSED_ACTIONS = (
    ("paused", "paused"),
    ("overlap", "skipped"),
    ("blocked", "blocked"),
    ("max_runs", "limited"),
)


def missed_action(missed: MissedRunRecord) -> dict[str, Any]:
    action = next((a for prefix, a in _MISSED_ACTIONS if missed.reason.startswith(prefix)), None)
    return {
        "at": missed.last_at.isoformat(),
        "action": action or "missed",
        "reason": missed.reason,
        "count": missed.count,
        "first_at": missed.first_at.isoformat(),
    }


def recent_actions(
    executions: list[ExecutionRecord], missed: list[MissedRunRecord], limit: int
) -> list[dict[str, Any]]:
    """Both merged, latest first, at most ``limit``."""
    dated: list[tuple[datetime, datetime, dict[str, Any]]] = [
        (e.scheduled_at, e.started_at, execution_action(e)) for e in executions
    ]
    dated.extend((m.last_at, m.recorded_at, missed_action(m)) for m in missed)
    dated.sort(key=lambda entry: (entry[0], entry[1]), reverse=True)
    return [entry for _, _, entry in dated[:limit]]


def next_fire_entry(fire: NextFire) -> dict[str, Any]:
    return {
        "at": None if fire.at is None else fire.at.isoformat(),
        "local": fire.local.isoformat(),
        "note": fire.note,
    }


class Describing:
    def __init__(
        self,
        *,
        store: StoreClient,
        owners: Owners,
        roster: Roster,
        clock: Clock,
        settings: SchedulerSettings,
    ) -> None:
        self._store = store
        self._owners = owners
        self._roster = roster
        self._clock = clock
        self._settings = settings

    async def describe(self, sender: str, ask: DescribeAsk) -> Payload:
        stored = await self._store.get_task(ask.task_id)
        self._owners.check(sender, stored.owner, ask.task_id, "read")
        task = self._roster.get(ask.task_id)
        if task is None or task.record.version != stored.version:
            task = definitions.compile_task(stored, self._settings)
        max_runs = task.policies.run.max_runs
        count = ask.count
        if max_runs is not None:
            count = min(count, max(0, max_runs - stored.fire_count))
        upcoming: list[dict[str, Any]] = []
        if stored.enabled and not stored.paused and count > 0:
            try:
                zone = ZoneInfo(stored.timezone)
            except (ValueError, OSError) as error:
                raise InvalidValue("timezone", f"{stored.timezone!r}: {error}") from error
            after = self._clock.wall()
            due = self._roster.next_fire(ask.task_id)
            if due is not None and due <= after:  # owed now: listed too
                after = definitions.accounted_through(stored)
            fires = next_fires(task.schedule, zone, after, count)
            upcoming = [next_fire_entry(fire) for fire in fires]
        actions: list[dict[str, Any]] = []
        if ask.actions:
            history = await self._store.history(ask.task_id, limit=ask.actions)
            missed = await self._store.missed_runs(ask.task_id, limit=ask.actions)
            actions = recent_actions(list(history.items), list(missed.items), ask.actions)
        return {
            "task_id": stored.task_id,
            "timezone": stored.timezone,
            "enabled": stored.enabled,
            "paused": stored.paused,
            "note": stored.note,
            "max_runs": max_runs,
            "fire_count": stored.fire_count,
            "next": upcoming,
            "actions": actions,
        }
