"""Taking over: what a scheduler does once it is granted the lease, before it serves or fires.

1. The code-defined tasks are put in the store as the code and the configuration define them now
   (their ``enabled`` flag and owner are the store's once stored; a new one owes fires from now).
2. Every enabled task is loaded with the instant it is accounted through, so fires missed while
   nobody led go through its misfire policy at the first tick; stale next runs are stored, one
   write per page.
3. Every execution of the recovery window left unfinished is dispatched again (same work id), and
   every failed attempt not yet retried or given up is decided again.
4. Every suspended run the store holds (sleeping or waiting) has its wake armed again
   (``Sleepers.rearm``); a run paused stays held until it is resumed.
5. Every run the store shows woken (``running``) whose woken attempt was never recorded (a
   leader died between the wake and its fire: ``stranded_runs``) is fired now, as the wake.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from actors.scheduling import definitions
from actors.scheduling.events import Events
from actors.scheduling.firing import Firing
from actors.scheduling.owners import SYSTEM_OWNER
from actors.scheduling.retries import Retries, failure_of
from actors.scheduling.roster import Roster
from actors.scheduling.sleepers import Sleepers
from actors.storing.client import StoreClient
from config.sections import SchedulerSettings
from scheduler import Clock
from store.errors import Conflict, InvalidValue, NotFound
from store.records import ExecutionRecord, RunMark, TaskRecord, TaskSpec, run_key

TASK_PAGE = 1000  # tasks loaded per request
RECOVERY_PAGE = 500  # unsettled executions read per request
STRANDED_PAGE = 500  # stranded runs read per request


class Takeover:
    def __init__(
        self,
        *,
        store: StoreClient,
        roster: Roster,
        firing: Firing,
        retries: Retries,
        sleepers: Sleepers,
        events: Events,
        counters: Counter[str],
        clock: Clock,
        settings: SchedulerSettings,
        builtin: Sequence[TaskSpec],
        log: logging.Logger,
    ) -> None:
        self._store = store
        self._roster = roster
        self._firing = firing
        self._retries = retries
        self._sleepers = sleepers
        self._events = events
        self._counters = counters
        self._clock = clock
        self._settings = settings
        self._builtin = tuple(builtin)
        self._log = log

    async def load(self) -> None:
        """Put the code-defined tasks, then load every enabled task into the roster."""
        await self._put_builtin()
        now = self._clock.wall()
        after: str | None = None
        while True:
            page = await self._store.list_tasks(after=after, limit=TASK_PAGE)
            stale: list[RunMark] = []  # next runs to store; due ones are stored when fired
            for record in page.items:
                if not record.enabled or record.paused:
                    continue
                try:
                    task = definitions.compile_task(record, self._settings)
                except InvalidValue as exc:  # e.g. a time zone this host does not know
                    self._log.error("task %s cannot be scheduled: %s", record.task_id, exc)
                    await self._events.status(
                        record.owner, record.task_id, "invalid", reason=str(exc)
                    )
                    continue
                self._roster.note_meaning(task)
                next_fire = self._roster.put(task)
                if next_fire != record.next_run and (next_fire or now) >= now:
                    stale.append(RunMark(task_id=record.task_id, next_run=next_fire))
            if stale:  # one write for the page, not a request per task
                await self._store.record_fires((), marks=stale)
            after = page.next_cursor
            if after is None:
                return

    async def recover(self) -> None:
        """Dispatch unfinished executions again; decide failed attempts not yet settled; arm
        the wakes of the suspended runs."""
        since = self._clock.wall() - timedelta(seconds=self._settings.recovery_window_s)
        after: str | None = None
        while True:
            page = await self._store.unsettled_executions(
                since=since, after=after, limit=RECOVERY_PAGE
            )
            for execution in page.items:
                await self._recover(execution)
            after = page.next_cursor
            if after is None:
                break
        await self._sleepers.rearm()
        await self._fire_stranded()

    async def _fire_stranded(self) -> None:
        """Fire the wakes the store made that no leader recorded (``stranded_runs``)."""
        after: str | None = None
        while True:
            page = await self._store.stranded_runs(after=after, limit=STRANDED_PAGE)
            for row in page.items:
                self._counters["stranded_wakes"] += 1
                await self._sleepers.fire(row)  # attempt row.attempt, wakes row.wakes
            after = page.next_cursor
            if after is None:
                return

    async def _recover(self, execution: ExecutionRecord) -> None:
        # deleted or disabled since: its runs are not owed any more (a child's task is never
        # enabled: its run is)
        task = await self._retries.task_of(execution.task_id)
        if task is None:
            return
        wakes = await self._wakes(execution)
        if execution.success is None:
            self._counters["recovered_dispatches"] += 1
            await self._firing.dispatch_again(
                task,
                execution.execution_id,
                execution.scheduled_at,
                execution.retry_count + 1,
                wakes,
            )
            return
        self._counters["recovered_failures"] += 1
        await self._retries.after_failure(task, failure_of(execution, wakes))

    async def _wakes(self, execution: ExecutionRecord) -> int:
        """How many attempts of the execution's fire were wakes (its run's, 0 without a row)."""
        if execution.retry_count == 0:
            return 0
        try:
            run = await self._store.get_run(run_key(execution.task_id, execution.scheduled_at))
        except NotFound:
            return 0
        return run.wakes

    async def _put_builtin(self) -> None:
        """Code-defined tasks as the code and the configuration define them now.

        What is stored is read by listing taskbus's own tasks, not by asking for each one: a
        first start then asks nothing the store must refuse (a refusal is logged as one)."""
        stored = await self._system_tasks()
        for spec in self._builtin:
            record = stored.get(spec.task_id)
            if record is None:
                new = replace(spec, accounted_through=self._clock.wall())  # owes from now on
                try:
                    await self._store.put_task(new, expected_version=0)
                    continue
                except Conflict:  # stored under another owner: it is updated below
                    record = await self._store.get_task(spec.task_id)
            wanted = replace(spec, enabled=record.enabled, owner=record.owner)
            if wanted != definitions.spec_of(record):
                await self._store.put_task(wanted, expected_version=record.version)

    async def _system_tasks(self) -> dict[str, TaskRecord]:
        wanted = {spec.task_id for spec in self._builtin}
        found: dict[str, TaskRecord] = {}
        after: str | None = None
        while wanted:
            page = await self._store.list_tasks(after=after, limit=TASK_PAGE, owner=SYSTEM_OWNER)
            found.update((r.task_id, r) for r in page.items if r.task_id in wanted)
            if page.next_cursor is None:
                break
            after = page.next_cursor
        return found
