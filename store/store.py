"""``Store``: what the scheduler's durable state offers, whatever keeps it.

Invariants every implementation keeps:

- **Acknowledged means durable.** A write method returns only once its change is committed to
  disk (as durably as the implementation documents); if it raises, nothing of it was written.
- **An attempt is a key.** ``record_execution`` writes one execution per (task id, scheduled
  instant, retry count); a second record of the same attempt returns the first, with
  ``duplicate`` set, and writes nothing. ``finish_execution`` on a finished execution and
  ``add_dead_letter`` of a known fire are duplicates in the same way; ``record_missed`` of a
  known (task id, ``first_at``) writes nothing.
- **Leases fence.** ``acquire_lease`` grants a lease to one holder at a time; each new grant has a
  larger token; a write given a ``Fence`` with an older token raises LeaseLost.
- **Time is an argument.** Methods whose effect depends on the time take ``now``.
- **Values round-trip verbatim**, ids with quotes and semicolons included.
- **A step's result is stored once.** ``put_step`` keeps the first outcome of a (run key, step
  name); a second put of the same step returns the stored one, with ``duplicate`` set, and writes
  nothing. Retention deletes a run's steps once none of the run's attempts is kept.
- **A run's wake is won once.** ``wake_run`` wakes a suspended run that is due, once: of two
  calls, one gets the run, the other None. ``suspend_run`` of a run already due (the lost
  wakeup: its signal came while it suspended) says so (the record returned is ``running``: the
  caller's ``wake_run`` wins it). A run that has ended (succeeded, failed, cancelled) takes no
  signal, control or suspension any more; retention deletes it, and its inbox, once it is older
  than the retention.
- **A re-created id starts a new history.** An execution belongs to the incarnation of its task
  it was recorded under; ``history``, ``task_status`` and ``stats`` count only the current
  incarnation's (all of a deleted task's). Deleting a task keeps its executions.

Errors: InvalidValue (a StoreError and a ValueError) names the field that is out of its domain
(oversize config, result or payload, NUL in text, a naive datetime, a full inbox); NotFound (also
a LookupError) for a missing task, execution or run; Conflict for a stale ``expected_version``
or a change to a run that has ended (``run <key> is succeeded``); LeaseLost for a stale lease;
StoreError for everything else (the file, the disk).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from store.errors import StoreError
from store.leases import Fence, LeaseGrant
from store.records import (
    DeadLetterRecord,
    ExecutionOutcome,
    ExecutionRecord,
    InboxSignal,
    Lease,
    MissedRunRecord,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    NewSignal,
    Page,
    Recorded,
    RetentionReport,
    RunMark,
    RunRecord,
    RunSuspension,
    StatsReport,
    StepOutcome,
    StepRecord,
    TaskRecord,
    TaskSpec,
    TaskStatus,
)


class Store(ABC):
    """The scheduler's durable state: tasks, executions, dead letters, missed runs and the
    lease.
    """

    @abstractmethod
    async def start(self) -> None:
        """Open (and create or migrate) the store; StoreError if it cannot."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending writes and close; idempotent."""

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ------------------------------------------------------------ health

    @abstractmethod
    def critical(self) -> list[str]:
        """Why the store cannot read (part of) its file, or cannot serve at all: the first few
        reasons one by one ("store cannot read <path>: the history of task 'x': <engine
        error>"), the rest as a count; empty when nothing is known to be wrong, and while the
        store is not running.

        A read, write or maintenance call stopped by damage, or a page returned with rows left
        out, marks what it read; a later read of the same thing that gets everything clears that
        mark, and an integrity check replaces every mark with what it finds (docs/store.md, §12).
        """

    @abstractmethod
    def degraded(self) -> list[str]:
        """Why the store refuses writes ("store refuses writes: database or disk is full"), from
        the group of writes the file refused until the next group committed; empty while it
        takes writes, and while it is not running.
        """

    @abstractmethod
    async def serving(self) -> StoreError:
        """Wait while the store serves; return the error that stopped its engine, after which
        every request fails at once until :meth:`start` opens the store again. Never returns
        after a plain :meth:`close`; raises StoreError at once if the store is not running.
        """

    # ------------------------------------------------------------ tasks

    @abstractmethod
    async def put_task(
        self, spec: TaskSpec, *, now: datetime, expected_version: int | None = None
    ) -> Recorded[TaskRecord]:
        """Create or replace a definition (``expected_version`` 0: create only); Conflict if
        ``expected_version`` is not the stored version. An unchanged put is a duplicate.
        """

    @abstractmethod
    async def put_tasks(
        self,
        puts: Sequence[tuple[TaskSpec, int | None]],
        *,
        now: datetime,
        fence: Fence | None = None,
    ) -> list[Recorded[TaskRecord] | StoreError]:
        """``put_task`` of each (spec, expected version), in order, in one write of at most
        MAX_EXECUTION_BATCH puts; a put refused on its own (Conflict, InvalidValue) has its
        error in its place and writes nothing, the others are written. LeaseLost for a stale
        ``fence`` (nothing written)."""

    @abstractmethod
    async def get_task(self, task_id: str) -> TaskRecord:
        """NotFound if there is no such task."""

    @abstractmethod
    async def list_tasks(
        self, *, after: str | None = None, limit: int = 100, owner: str | None = None
    ) -> Page[TaskRecord]:
        """Tasks in task id order, from the cursor ``after``; only ``owner``'s if given."""

    @abstractmethod
    async def delete_task(self, task_id: str) -> bool:
        """Remove a definition (its executions stay, no longer its history once the id is
        created again); False if there was none."""

    @abstractmethod
    async def mark_run(
        self, task_id: str, *, last_run: datetime | None, next_run: datetime | None, now: datetime
    ) -> TaskRecord:
        """Record a task's latest and next fire (``last_run`` never moves back); NotFound."""

    @abstractmethod
    async def reset_task(
        self, task_id: str, *, now: datetime, accounted_through: datetime | None = None
    ) -> TaskRecord:
        """Clear a task's ``last_run`` and ``next_run`` (the version stays); nothing before
        ``accounted_through`` (default ``now``) is owed any more; NotFound."""

    @abstractmethod
    async def task_status(self, task_id: str) -> TaskStatus:
        """Last run (the schedule's or any run's of this incarnation, manual ones too), next
        run, run counts and the last error of the task's current incarnation; NotFound."""

    # ------------------------------------------------------------ executions

    @abstractmethod
    async def record_execution(
        self, new: NewExecution, *, fence: Fence | None = None
    ) -> Recorded[ExecutionRecord]:
        """Record a fire once (see the class invariants)."""

    @abstractmethod
    async def finish_execution(
        self, execution_id: str, outcome: ExecutionOutcome, *, fence: Fence | None = None
    ) -> Recorded[ExecutionRecord]:
        """Record how a run ended (its real start, duration and log lines with it); NotFound;
        a finished run is a duplicate. A success whose result has no ``suspended`` key ends
        the run: its ``runs`` row, if it has one that has not ended, becomes ``succeeded`` in
        the same write (``finish_executions`` likewise)."""

    @abstractmethod
    async def record_fires(
        self,
        news: Sequence[NewExecution],
        *,
        marks: Sequence[RunMark] = (),
        fence: Fence | None = None,
        now: datetime,
    ) -> list[Recorded[ExecutionRecord]]:
        """Record several fires (each as ``record_execution``, in order) and the run state of
        their tasks (each as ``mark_run``; a task that is gone is passed over) in one write: all
        of it, or nothing if it raises (LeaseLost for a stale fence).

        A fire with a ``start_key`` (only ``record_fires`` looks at it) gives its run a ``runs``
        row holding the key; a fire whose (task, start key) another run holds is not recorded,
        and its place in the answer is that run's latest attempt, as a duplicate. A fire with
        a ``parent_key`` (a child run's) writes it, its ``spawn_key`` and ``on_parent_cancel``
        into its run's row.
        """

    @abstractmethod
    async def finish_executions(
        self, finishes: Sequence[tuple[str, ExecutionOutcome]]
    ) -> list[Recorded[ExecutionRecord] | StoreError]:
        """``finish_execution`` of each (execution id, outcome), committed together; each
        one's NotFound or InvalidValue is returned in its place, having written nothing.
        """

    @abstractmethod
    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        """The execution, with its log lines; NotFound if there is no such execution."""

    @abstractmethod
    async def execution_outcomes(self, execution_ids: Sequence[str]) -> dict[str, bool | None]:
        """Of each known execution: succeeded (True), failed (False) or unfinished (None);
        unknown ids are left out.
        """

    @abstractmethod
    async def history(
        self, task_id: str, *, before: str | None = None, limit: int = 50
    ) -> Page[ExecutionRecord]:
        """The executions of the task's current incarnation (without their log lines), latest
        start first, from the cursor ``before``."""

    @abstractmethod
    async def unsettled_executions(
        self, *, since: datetime | None = None, after: str | None = None, limit: int = 100
    ) -> Page[ExecutionRecord]:
        """The last attempt of each fire that is running or failed and has no later attempt
        and no dead letter (fires scheduled at or after ``since``), in execution id order, from
        the cursor ``after``.
        """

    @abstractmethod
    async def stats(
        self, *, since: datetime | None = None, task_id: str | None = None
    ) -> StatsReport:
        """Counts, success and failure rates, mean/min/max/p95 durations (of current
        incarnations); how many tasks are stored, and enabled."""

    # ------------------------------------------------------------ dead letters

    @abstractmethod
    async def add_dead_letter(self, letter: NewDeadLetter) -> Recorded[DeadLetterRecord]:
        """Keep a fire given up on, once."""

    @abstractmethod
    async def dead_letters(
        self, *, task_id: str | None = None, before: str | None = None, limit: int = 50
    ) -> Page[DeadLetterRecord]:
        """Dead letters, latest failure first."""

    # ------------------------------------------------------------ missed runs

    @abstractmethod
    async def record_missed(
        self,
        task_id: str,
        runs: Sequence[NewMissedRun],
        *,
        now: datetime,
        fence: Fence | None = None,
        fired: bool = False,
    ) -> int:
        """Keep 1 to 1000 missed runs of a task in one write; those whose ``first_at`` is
        already kept for the task are skipped, and so is a single fire recorded as run, unless
        ``fired`` (the caller ends those fires as not run: an overlap skip). Returns how many
        were new.
        """

    @abstractmethod
    async def missed_runs(
        self, task_id: str, *, before: str | None = None, limit: int = 50
    ) -> Page[MissedRunRecord]:
        """One task's missed runs, latest ``first_at`` first, from the cursor ``before``."""

    # ------------------------------------------------------------ run steps

    @abstractmethod
    async def put_step(self, run_key: str, outcome: StepOutcome) -> Recorded[StepRecord]:
        """Keep a finished step of the run ``run_key`` (a fire's key: ``store.run_key``) once;
        InvalidValue names ``result`` if it is not msgpack-able or over the value bound."""

    @abstractmethod
    async def run_steps(self, run_key: str) -> tuple[StepRecord, ...]:
        """The steps kept for the run, in the order they were stored (none: empty)."""

    # ------------------------------------------------------------ durable runs

    @abstractmethod
    async def suspend_run(self, suspension: RunSuspension) -> RunRecord:
        """Record that an attempt suspended (the run sleeps or waits; paused if it was or the
        suspension says so). A run that has ended, or whose row knows of a later attempt, is
        returned unchanged. If the run is due at once (the lost-wakeup rule: its signal is in
        its inbox already, its time has passed), the record returned says ``running``: wake it
        now, through ``wake_run``. The stored row stays suspended, and due, until a
        ``wake_run`` wins it (a wake never asked for is still owed to the next scheduler).
        The suspension's ``answers`` (to the run's queries) are kept with the row (None keeps
        those stored); InvalidValue names ``answers`` if they cannot be stored.
        """

    @abstractmethod
    async def wake_run(self, run_key: str, *, now: datetime) -> RunRecord | None:
        """Wake the run if it is suspended, not paused and due at ``now`` (``RunRecord.due``):
        it is ``running`` again, with one more wake and one more attempt (``attempt``, the one
        to fire). None otherwise (unknown, running, ended, paused, not due)."""

    @abstractmethod
    async def put_signal(
        self, new: NewSignal, *, task_id: str, scheduled_at: datetime
    ) -> tuple[InboxSignal, RunRecord]:
        """Add a signal to the inbox of the run (``task_id``'s fire at ``scheduled_at``, whose
        row is created if it has none); returns it and the run, its ``signals`` counted.
        Conflict if the run has ended; InvalidValue names ``payload`` (not msgpack-able, too
        deep, over the value bound) or ``inbox`` (it holds MAX_INBOX_SIGNALS, or this payload
        would take its payloads over MAX_INBOX_BYTES). Nothing is
        woken: the caller calls ``wake_run`` for a run waiting for that name."""

    @abstractmethod
    async def run_signals(self, run_key: str) -> tuple[InboxSignal, ...]:
        """The run's inbox, in the order the signals were sent (none: empty)."""

    @abstractmethod
    async def control_run(
        self,
        run_key: str,
        *,
        task_id: str,
        scheduled_at: datetime,
        action: str,
        reason: str | None = None,
        now: datetime,
    ) -> tuple[RunRecord, str]:
        """``cancel`` (the run ends, ``cancelled``), ``pause`` (its wakes are held) or
        ``resume`` (released; a due run is woken by the caller's ``wake_run``) the run, whose
        row is created if it has none; returns the run after and its state before. Conflict
        if the run has ended, except that cancelling a cancelled run returns it unchanged."""

    @abstractmethod
    async def reopen_run(
        self,
        run_key: str,
        *,
        task_id: str,
        scheduled_at: datetime,
        from_step: str | None = None,
        now: datetime,
    ) -> tuple[RunRecord, tuple[str, ...]]:
        """Make an ended run run again (``run retry``), in one write: with ``from_step``, that
        step and every step stored after it are deleted (earlier ones kept; NotFound if the
        run never stored it); without, the steps that stored a final error. The run's row
        (created if it has none) is ``running``, not paused, without a wake, its ``attempt``
        the one to fire (its latest attempt's + 1); returns it and the deleted steps' names, in
        the order they were stored. Only a run that ended may be: state ``failed`` or
        ``cancelled`` (``succeeded`` only with ``from_step``), or, without a row, one whose
        latest attempt failed (succeeded: only with ``from_step``); else Conflict (``run <key>
        is <state>``), and Conflict too while its latest attempt has not ended (a cancelled
        run's attempt still stopping); NotFound if the store keeps neither a row nor an attempt
        of it."""

    @abstractmethod
    async def get_run(self, run_key: str) -> RunRecord:
        """The run, its ``signals`` counted; NotFound if it has no row."""

    @abstractmethod
    async def list_runs(
        self,
        *,
        task_id: str | None = None,
        states: Sequence[str] = (),
        after: str | None = None,
        limit: int = 50,
        owner: str | None = None,
    ) -> Page[RunRecord]:
        """Runs with a row in run key order, from the cursor ``after``: of ``task_id`` only, in
        ``states`` only (all if empty), of tasks ``owner`` owns only, if given."""

    @abstractmethod
    async def suspended_runs(
        self, *, after: str | None = None, limit: int = 100
    ) -> Page[RunRecord]:
        """Every sleeping or waiting run (paused ones too), in run key order: what a scheduler
        taking over must wake."""

    @abstractmethod
    async def finish_run(
        self,
        run_key: str,
        state: str,
        *,
        reason: str | None = None,
        now: datetime,
        answers: Mapping[str, Any] | None = None,
    ) -> RunRecord | None:
        """End the run (``state``: succeeded, failed or cancelled) if it has a row and has not
        ended yet (one that has keeps its state); None if it has no row. ``answers``: the run's
        answers to its queries, kept with the row either way (None keeps those stored);
        InvalidValue names ``answers`` if they cannot be stored."""

    @abstractmethod
    async def latest_attempt(self, task_id: str, scheduled_at: datetime) -> ExecutionRecord | None:
        """The last attempt recorded of ``task_id``'s fire at ``scheduled_at`` (of its
        executions, the one started last); None if none is kept."""

    @abstractmethod
    async def run_children(self, parent_key: str) -> tuple[RunRecord, ...]:
        """The runs spawned by the run ``parent_key``, in run key order (none: empty)."""

    @abstractmethod
    async def stranded_runs(self, *, after: str | None = None, limit: int = 100) -> Page[RunRecord]:
        """Runs in state ``running`` whose ``attempt`` has no recorded execution (woken by a
        scheduler that died before recording the wake's fire), in run key order: what a
        scheduler taking over must fire."""

    # ------------------------------------------------------------ retention

    @abstractmethod
    async def run_retention(
        self,
        *,
        now: datetime,
        retention_days: float | None = None,
        max_executions: int | None = None,
    ) -> RetentionReport:
        """Delete executions and dead letters older than the retention, then the oldest
        executions beyond ``max_executions``, then the runs that ended before the retention
        (and their inboxes), then the steps of runs none of whose executions is kept (unless
        the run has not ended).
        """

    # ------------------------------------------------------------ the lease

    @abstractmethod
    async def acquire_lease(
        self, name: str, holder: str, *, ttl_s: float, now: datetime
    ) -> LeaseGrant:
        """Grant ``name`` to ``holder`` if free, expired or already theirs."""

    @abstractmethod
    async def renew_lease(
        self, name: str, holder: str, token: int, *, ttl_s: float, now: datetime
    ) -> Lease:
        """Extend a live lease; LeaseLost if it is not ``holder``'s with ``token`` any more."""

    @abstractmethod
    async def release_lease(self, name: str, holder: str, token: int, *, now: datetime) -> bool:
        """Give a lease up; False if it was not the caller's."""
