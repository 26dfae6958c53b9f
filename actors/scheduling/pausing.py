"""``scheduler.task.pause`` and ``scheduler.task.unpause``
(docs/scheduling.md#pausing-limited-runs-and-describe).

A pause stores ``paused`` and its note with the definition (a new version) and takes the task out
of the roster: it does not fire. Its fires are not recorded as they pass: on unpause, the
instants the task owed since it was accounted for (its last fire) up to now are recorded as one
missed range with the reason ``paused: <note>`` (first, last, count), then the task is stored
unpaused, accounted for through now, and fires again from its next instant. Recording the range
first makes an unpause that fails half-way safe to ask again: a range recorded twice is one row
(``missed_runs`` is unique by task and first instant).

Pausing a paused task replaces its note; unpausing a task that is not paused changes nothing.
A disabled task may be paused too; it owes nothing, so its unpause records nothing.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any, NamedTuple

from actors.scheduling import definitions
from actors.scheduling.events import Events
from actors.scheduling.lease import LeaseKeeper
from actors.scheduling.owners import Owners
from actors.scheduling.requests import task_id
from actors.scheduling.roster import Roster
from actors.storing import fields
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from actors.storing.wire import plain
from bus.envelope import Payload
from config.sections import SchedulerSettings
from scheduler import Clock
from scheduler.pauses import passed_while_paused
from store.errors import InvalidValue
from store.records import MAX_NOTE_CHARS, NewMissedRun, TaskRecord


class PauseAsk(NamedTuple):
    """A ``scheduler.task.pause``: the task and why (``note``, optional)."""

    task_id: str
    note: str | None


def note_text(name: str, value: Any) -> str:
    """A note: printable text of 1..MAX_NOTE_CHARS characters."""
    text = fields.text(name, value)
    if len(text) > MAX_NOTE_CHARS:
        raise InvalidValue(name, f"is {len(text)} characters long, more than {MAX_NOTE_CHARS}")
    if not text.isprintable():
        raise InvalidValue(name, "must be printable (no control characters or line breaks)")
    return text


@strict
def read_pause(request: Fields) -> PauseAsk:
    return PauseAsk(
        task_id=request.required("task_id", task_id),
        note=request.optional("note", note_text, None),
    )


class Pausing:
    """What pause and unpause do; ``sender`` is the requester's authenticated identity."""

    def __init__(
        self,
        *,
        store: StoreClient,
        owners: Owners,
        roster: Roster,
        lease: LeaseKeeper,
        events: Events,
        counters: Counter[str],
        clock: Clock,
        settings: SchedulerSettings,
    ) -> None:
        self._store = store
        self._owners = owners
        self._roster = roster
        self._lease = lease
        self._events = events
        self._counters = counters
        self._clock = clock
        self._settings = settings

    async def pause(self, sender: str, ask: PauseAsk) -> Payload:
        stored = await self._owned(sender, ask.task_id, "pause")
        spec = replace(definitions.spec_of(stored), paused=True, note=ask.note)
        written = await self._store.put_task(spec, expected_version=stored.version)
        self._roster.remove(ask.task_id)  # runs in progress and their retries go on
        record = written.record
        if record.next_run is not None:
            record = await self._store.mark_run(ask.task_id, next_run=None)
        if not written.duplicate:
            self._counters["paused"] += 1
            await self._events.status(record.owner, record.task_id, "paused", note=ask.note)
        return {"task": plain(record)}

    async def unpause(self, sender: str, task_ref: str) -> Payload:
        stored = await self._owned(sender, task_ref, "unpause")
        if not stored.paused:
            return {"task": plain(stored), "missed": None}
        task = definitions.compile_task(stored, self._settings)
        now = self._clock.wall()
        missed = None
        if stored.enabled:
            since = definitions.accounted_through(stored)
            missed = passed_while_paused(task.schedule, since, now, stored.note)
        ranges: list[dict[str, Any]] = []
        if missed is not None:
            run = NewMissedRun(
                first_at=missed.first, last_at=missed.last, count=missed.count, reason=missed.reason
            )
            await self._store.record_missed(task_ref, [run], fence=self._lease.fence)
            self._counters["missed"] += missed.count
            ranges.append(plain(run))
        next_run = self._roster.upcoming(task_ref, task.schedule, now) if stored.enabled else None
        spec = replace(
            definitions.spec_of(stored),
            paused=False,
            note=None,
            accounted_through=now,
            next_run=next_run,
        )
        written = await self._store.put_task(spec, expected_version=stored.version)
        record = written.record
        if record.enabled:
            compiled = definitions.compile_task(record, self._settings)
            next_fire = self._roster.put(compiled)
            if next_fire != record.next_run:
                record = await self._store.mark_run(task_ref, next_run=next_fire)
        await self._events.status(record.owner, record.task_id, "unpaused", missed=ranges)
        return {"task": plain(record), "missed": ranges[0] if ranges else None}

    async def _owned(self, sender: str, task_ref: str, action: str) -> TaskRecord:
        stored = await self._store.get_task(task_ref)
        self._owners.check(sender, stored.owner, task_ref, action)
        return stored
