"""``scheduler.task.backfill``: fire every instant of a task's schedule in a past range once
(docs/scheduling.md#backfill).

The instants come from the task's compiled schedule (``scheduler.backfill``); each becomes a fire
with reason ``backfill`` through the one write path (``Firing.start_many``: recorded, fenced,
unique by task, instant and attempt, then through the gates). An instant recorded before (it
ran, runs, or is held) comes back a duplicate and is not fired again: it counts as ``already``.
The request's ``overlap`` rule (default ``buffer_all``: the backfilled runs go one after another)
rides on each fire for the overlap gate, in place of the task's own rule.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

from actors.scheduling.firing import Fire, Firing
from actors.scheduling.owners import Owners
from actors.scheduling.requests import task_id
from actors.scheduling.roster import Roster
from actors.storing import fields
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from bus.envelope import Payload
from scheduler import Clock
from scheduler.backfill import MAX_BACKFILL, BackfillError, backfill_instants
from scheduler.policies import OVERLAP_RULES, OverlapRule
from store.errors import Conflict, InvalidValue

DEFAULT_OVERLAP: OverlapRule = "buffer_all"
_MAX_INSTANT_CHARS = 64  # far more than any ISO 8601 instant needs


class BackfillAsk(NamedTuple):
    """A ``scheduler.task.backfill``: the instants of ``task_id`` in ``[start, end]``."""

    task_id: str
    start: datetime
    end: datetime
    overlap: OverlapRule


def _instant(name: str, value: Any) -> datetime:
    """An ISO 8601 instant with a UTC offset, as UTC."""
    if isinstance(value, str) and len(value) > _MAX_INSTANT_CHARS:
        raise InvalidValue(name, f"is {len(value)} characters long, more than {_MAX_INSTANT_CHARS}")
    return fields.instant(name, value)


def _overlap(name: str, value: Any) -> OverlapRule:
    text = fields.text(name, value)
    if text not in OVERLAP_RULES:
        raise InvalidValue(name, f"{text[:40]!r}: expected one of {', '.join(OVERLAP_RULES)}")
    return text


@strict
def read_backfill(request: Fields) -> BackfillAsk:
    return BackfillAsk(
        task_id=request.required("task_id", task_id),
        start=request.required("from", _instant),
        end=request.required("to", _instant),
        overlap=request.optional("overlap", _overlap, DEFAULT_OVERLAP),
    )


class Backfills:
    """What a backfill does; ``sender`` is the requester's authenticated identity."""

    def __init__(
        self,
        *,
        store: StoreClient,
        owners: Owners,
        roster: Roster,
        firing: Firing,
        counters: Counter[str],
        clock: Clock,
    ) -> None:
        self._store = store
        self._owners = owners
        self._roster = roster
        self._firing = firing
        self._counters = counters
        self._clock = clock

    async def backfill(self, sender: str, ask: BackfillAsk) -> Payload:
        """Fire each instant of the range not recorded before; the counts, and the first and
        last instant. Refused ``not_found`` (no such task), ``denied`` (neither its owner nor an
        admin), ``conflict`` (the task is disabled or paused), ``invalid`` (from >= to, to in
        the future, more than MAX_BACKFILL instants)."""
        task = self._roster.get(ask.task_id)
        record = task.record if task is not None else await self._store.get_task(ask.task_id)
        self._owners.check(sender, record.owner, ask.task_id, "backfill")
        if task is None:  # stored, not scheduled: its held fires would be dropped, not run
            why, fix = ("paused", "unpause") if record.paused else ("disabled", "enable")
            raise Conflict(
                f"task {ask.task_id!r} is {why}: {fix} it to backfill it (the fires of a "
                "task that is not scheduled are not run once they waited their turn)"
            )
        try:
            found = backfill_instants(
                task.schedule, ask.start, ask.end, self._clock.wall(), limit=MAX_BACKFILL
            )
        except BackfillError as error:
            raise InvalidValue(error.field, error.problem) from error
        fires = [
            Fire(task, instant, reason="backfill", overlap=ask.overlap)
            for instant in found.instants
        ]
        fired = await self._firing.start_many(fires)
        new = sum(1 for one in fired if not one.stored.duplicate)
        self._counters["backfilled"] += new
        return {
            "task_id": ask.task_id,
            "from": found.start.isoformat(),
            "to": found.end.isoformat(),
            "overlap": ask.overlap,
            "instants": len(found.instants),
            "fired": new,
            "already": len(fired) - new,
            "first": None if found.first is None else found.first.isoformat(),
            "last": None if found.last is None else found.last.isoformat(),
        }
