"""Firing: the fire loop's plans become recorded fires, dispatched work and recorded missed runs;
a trigger's and a retry's fire go the same way.

**One write path.** Every fire, whatever made it (a schedule, a trigger, a retry), is recorded by
``_record`` in one fenced ``record_fires`` write, together with the run state (last and next run)
of the tasks whose plans it settles, and only then dispatched. The idempotency key (task, instant,
attempt) makes the record unique: a fire recorded before (by this or an earlier leader) comes back
a duplicate, and is dispatched again only if it has not finished, under the same work id, which
the broker holds once. A scheduler that dies between the record and the dispatch leaves the fire
unfinished, and the next leader dispatches it on takeover.

Plain plans (runs due now, nothing missed, no jitter) share writes, FIRE_BATCH fires each and at
most FIRE_BATCHES_IN_FLIGHT at once, so that thousands of fires due together do not flood the
store's mailbox. The others are settled one task at a time, at most SETTLING at once: their missed
runs recorded first, then their runs, a jittered run dispatched once its delay has passed on the
scheduler's clock.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from actors.scheduling.background import Background
from actors.scheduling.definitions import CompiledTask
from actors.scheduling.events import Events
from actors.scheduling.lease import LeaseKeeper
from actors.scheduling.limits import RunLimits
from actors.scheduling.owed import Owed
from actors.scheduling.protocol import Dispatch, RunResult, dispatch_queue, work_id
from actors.scheduling.roster import Roster
from actors.storing.client import RecordedFire, StoreClient
from actors.storing.wire import plain
from bus import AskTimeout
from bus.envelope import Payload
from config.sections import SchedulerSettings
from scheduler import Clock, MisfirePlan, PlannedRun, TaskPlan, jittered, sleep
from scheduler.policies import OverlapRule
from store.records import (
    MAX_MISSED_BATCH,
    ExecutionOutcome,
    NewExecution,
    NewMissedRun,
    RunMark,
)

FIRE_BATCH = 500  # fires recorded (and dispatched) per store write
# The fire loop hands over fires due within this: each is recorded (committed, fsynced) ahead and
# dispatched at its instant, so the commit is not in the fire's latency (the fire loop's lead_s).
FIRE_LEAD_S = 0.005  # ~ a commit's p99 here (encrypted WAL + fsync); a slower one dispatches late
FIRE_BATCHES_IN_FLIGHT = 4  # batches at once: one commits while another is dispatched
SETTLING = 64  # plans with missed runs or jitter settled at once
DISPATCH_TIMEOUT_S = 10.0  # for the broker to confirm that it holds a batch of dispatches

Enqueue = Callable[[str, Payload, bytes], "asyncio.Future[bytes]"]


@dataclass(frozen=True, slots=True)
class Fire:
    """One attempt (1: the first run) of the fire of ``task`` at ``instant``; ``coalesced``
    counts the missed fires it stands for, ``reason`` says what made it (its ``queued`` event).
    ``wakes``: how many attempts before it were wakes of its suspended run; ``start_key``: the
    caller's idempotency key of a start (a trigger's), one run per key and task. A child run's
    fire (a spawn's) names its parent run (``parent_key``), its key there (``spawn_key``) and
    what the parent's cancel does to it (``on_parent_cancel``). ``overlap``: the overlap rule
    for this fire instead of the task's (a backfill's), read by the overlap gate."""

    task: CompiledTask
    instant: datetime
    attempt: int = 1
    coalesced: int = 0
    reason: str = "schedule"
    wakes: int = 0
    start_key: str | None = None
    parent_key: str | None = None
    spawn_key: str | None = None
    on_parent_cancel: str = "cancel"
    overlap: OverlapRule | None = None


def scheduled(task: CompiledTask, run: PlannedRun) -> Fire:
    """The fire of a planned run: ``catch-up`` if it stands for missed fires (coalesced) or is
    later than the misfire policy's grace (a fire missed while down, run anyway), else
    ``schedule``."""
    late = run.coalesced > 0 or run.late_s > task.policies.misfire.grace_s
    reason = "catch-up" if late else "schedule"
    return Fire(task, run.instant, coalesced=run.coalesced, reason=reason)


@dataclass(frozen=True, slots=True)
class Fired:
    """A fire as the store recorded it."""

    fire: Fire
    stored: RecordedFire

    @property
    def execution_id(self) -> str:
        return self.stored.execution_id


class FireGate(Protocol):
    """A check between a recorded fire and its dispatch (dependencies, overlap, concurrency:
    docs/scheduling.md). Every recorded fire that is owed passes the gates in the order they
    were added (``Firing.add_gate``); a gate lets a fire go on, holds it (and later hands it to
    ``Firing.resume(fired, after=gate)``, which passes it through the gates after it), or
    settles it itself (a skip recorded as missed, a blocked fire finished)."""

    async def admit(self, fired: Sequence[Fired]) -> list[Fired]:
        """The fires that go on now, in order; the others are held or settled here."""
        ...

    async def attempt_ended(self, result: RunResult, *, final: bool) -> None:
        """An executor's result for an attempt (``final``: its run ended: it succeeded, was
        cancelled, or failed and no retry follows; a suspended run is not final)."""
        ...


class Firing:
    def __init__(
        self,
        *,
        store: StoreClient,
        owed: Owed,
        lease: LeaseKeeper,
        roster: Roster,
        enqueue: Enqueue,
        events: Events,
        counters: Counter[str],
        clock: Clock,
        settings: SchedulerSettings,
        background: Background,
        log: logging.Logger,
    ) -> None:
        self._store = store
        self._owed = owed
        self._lease = lease
        self._roster = roster
        self._enqueue = enqueue
        self._events = events
        self._counters = counters
        self._clock = clock
        self._settings = settings
        self._background = background
        self._log = log
        self._gates: list[FireGate] = []
        self.limits: RunLimits | None = None  # max_runs: trims plans, disables finished tasks

    def add_gate(self, gate: FireGate) -> None:
        """Pass every owed fire through ``gate`` too, after the gates added before it."""
        self._gates.append(gate)

    @property
    def gates(self) -> tuple[FireGate, ...]:
        return tuple(self._gates)

    async def resume(self, fired: Sequence[Fired], *, after: FireGate) -> None:
        """Fires ``after`` held and now lets go: through the gates after it, then dispatched."""
        index = self._gates.index(after)
        await self._send(await self._admit(list(fired), self._gates[index + 1 :]))

    async def attempt_ended(self, result: RunResult, *, final: bool) -> None:
        """Tell every gate of an executor's result (``FireGate.attempt_ended``)."""
        for gate in self._gates:
            await gate.attempt_ended(result, final=final)

    # ------------------------------------------------------------ what others fire

    async def fire(
        self,
        task: CompiledTask,
        instant: datetime,
        *,
        attempt: int,
        reason: str,
        wakes: int = 0,
        start_key: str | None = None,
    ) -> str:
        """Record one fire (a trigger's, a retry's, a wake's), then dispatch it; its execution
        id."""
        fired = await self.start(
            task, instant, attempt=attempt, reason=reason, wakes=wakes, start_key=start_key
        )
        return fired.execution_id

    async def start(
        self,
        task: CompiledTask,
        instant: datetime,
        *,
        attempt: int,
        reason: str,
        wakes: int = 0,
        start_key: str | None = None,
        parent_key: str | None = None,
        spawn_key: str | None = None,
        on_parent_cancel: str = "cancel",
        overlap: OverlapRule | None = None,
    ) -> Fired:
        """``fire``, returning the fire as recorded: with a ``start_key`` already used for the
        task, ``stored.duplicate`` is true and its execution id is that run's latest attempt,
        which is not dispatched again here (its run is settled as any other). A child run's
        fire carries its parent (``parent_key``, ``spawn_key``, ``on_parent_cancel``)."""
        fire = Fire(
            task,
            instant,
            attempt,
            reason=reason,
            wakes=wakes,
            start_key=start_key,
            parent_key=parent_key,
            spawn_key=spawn_key,
            on_parent_cancel=on_parent_cancel,
            overlap=overlap,
        )
        (fired,) = await self._record([fire])
        await self._dispatch([fired])
        return fired

    async def start_many(self, fires: Sequence[Fire]) -> list[Fired]:
        """Record ``fires`` (FIRE_BATCH a write, each attempt once), then dispatch through the
        gates those recorded anew; a fire recorded before (``stored.duplicate``) is left to what
        owes it (it finished, or runs, is held or is a takeover's to recover). A backfill's."""
        fired: list[Fired] = []
        for start in range(0, len(fires), FIRE_BATCH):
            chunk = await self._record(fires[start : start + FIRE_BATCH])
            await self._dispatch([one for one in chunk if not one.stored.duplicate])
            fired.extend(chunk)
        return fired

    async def dispatch_again(
        self,
        task: CompiledTask,
        execution_id: str,
        instant: datetime,
        attempt: int,
        wakes: int = 0,
    ) -> None:
        """Dispatch a fire recorded before and never finished (a takeover's recovery), through
        the gates as any other."""
        fire = Fire(task, instant, attempt, reason="recovery", wakes=wakes)
        stored = RecordedFire(execution_id=execution_id, duplicate=True, success=None)
        owed = await self._admit([Fired(fire, stored)], self._gates)
        await self._dispatch_all(
            [
                (f.fire.task, f.execution_id, f.fire.instant, f.fire.attempt, f.fire.wakes)
                for f in owed
            ]
        )

    # ------------------------------------------------------------ the fire loop's plans

    async def on_plans(self, plans: list[TaskPlan], now: datetime) -> None:
        """A tick's plans: the plain ones in shared batches, the others one task at a time."""
        plain_plans: list[tuple[CompiledTask, MisfirePlan]] = []
        others: list[TaskPlan] = []
        for task_plan in plans:
            task = self._roster.get(task_plan.task_id)
            if task is None:
                continue
            plan = task_plan.plan
            if (
                plan.missed
                or plan.unlisted is not None
                or len(plan.runs) > FIRE_BATCH
                or (plan.runs and task.policies.run.jitter_s > 0)
                or task.policies.run.max_runs is not None  # trimmed and counted: one at a time
            ):
                others.append(task_plan)
            else:
                plain_plans.append((task, plan))
        settling = asyncio.Semaphore(SETTLING)

        async def settle(task_plan: TaskPlan) -> None:
            async with settling:
                await self._settle(task_plan)

        await asyncio.gather(
            self._fire_batches(plain_plans), *(settle(task_plan) for task_plan in others)
        )

    async def _fire_batches(self, plans: list[tuple[CompiledTask, MisfirePlan]]) -> None:
        batches: list[list[tuple[CompiledTask, MisfirePlan]]] = []
        size = 0
        for task, plan in plans:
            weight = max(1, len(plan.runs))
            if not batches or size + weight > FIRE_BATCH:
                batches.append([])
                size = 0
            batches[-1].append((task, plan))
            size += weight
        in_flight = asyncio.Semaphore(FIRE_BATCHES_IN_FLIGHT)

        async def fire(batch: list[tuple[CompiledTask, MisfirePlan]]) -> None:
            async with in_flight:
                fires = [scheduled(task, run) for task, plan in batch for run in plan.runs]
                marks = [self._mark(task, plan) for task, plan in batch]
                await self._dispatch_when_due(await self._record(fires, marks))

        await asyncio.gather(*(fire(batch) for batch in batches))

    async def _settle(self, task_plan: TaskPlan) -> None:
        """Record what did not run, then the runs with the task's run state (the last chunk's
        write carries it), then dispatch them, a jittered one after its delay (recorded first,
        so that a scheduler that dies meanwhile leaves it to the next leader's recovery)."""
        task = self._roster.get(task_plan.task_id)
        if task is None:
            return
        plan = task_plan.plan
        if self.limits is not None:
            plan = await self.limits.trim(task, plan)
        await self._record_missed(task, plan)
        fires = [scheduled(task, run) for run in plan.runs]
        chunks = [fires[start : start + FIRE_BATCH] for start in range(0, len(fires), FIRE_BATCH)]
        chunks = chunks or [[]]  # nothing runs: the write still accounts for the plan
        fired: list[Fired] = []
        for chunk in chunks[:-1]:
            fired.extend(await self._record(chunk))
        fired.extend(await self._record(chunks[-1], [self._mark(task, plan)]))
        await self._dispatch_when_due(fired)
        if self.limits is not None:
            await self.limits.settled(task, max((self._delay_s(f.fire) for f in fired), default=0))

    def _mark(self, task: CompiledTask, plan: MisfirePlan) -> RunMark:
        """The task's run state once ``plan`` is recorded: its last and next fire."""
        return RunMark(
            task_id=task.task_id,
            last_run=plan.through,
            next_run=self._roster.next_fire(task.task_id),
        )

    @staticmethod
    def _due(fire: Fire) -> datetime:
        """When a recorded fire is dispatched: its instant, moved by the task's jitter."""
        jitter_s = fire.task.policies.run.jitter_s
        if jitter_s <= 0:
            return fire.instant
        return jittered(fire.instant, fire.task.task_id, jitter_s)

    def _delay_s(self, fire: Fire) -> float:
        return (self._due(fire) - self._clock.wall()).total_seconds()

    async def _dispatch_when_due(self, fired: Sequence[Fired]) -> None:
        """Dispatch the fires due now; one planned ahead (``FIRE_LEAD_S``) or jittered is
        dispatched at its instant, with the others due then (it is recorded already, so a
        scheduler that dies meanwhile leaves it to the next leader's recovery)."""
        now = self._clock.wall()
        immediate: list[Fired] = []
        later: dict[datetime, list[Fired]] = {}
        for one in fired:
            due = self._due(one.fire)
            if due > now and not one.stored.duplicate:
                later.setdefault(due, []).append(one)
            else:
                immediate.append(one)
        for due, group in later.items():
            self._background.spawn(self._dispatch_later(group, (due - now).total_seconds()))
        await self._dispatch(immediate)

    async def _dispatch_later(self, fired: list[Fired], delay: float) -> None:
        """Dispatch recorded fires once ``delay`` has passed; a fire whose task was deleted or
        disabled meanwhile is ended as not started instead."""
        await sleep(self._clock, delay)
        kept: list[Fired] = []
        gone: list[Fired] = []
        for one in fired:  # judged once: a task deleted while they are dispatched is not both
            (kept if one.fire.task.task_id in self._roster else gone).append(one)
        await self._dispatch(kept)
        for one in gone:
            task_id = one.fire.task.task_id
            self._log.info("%s gone before its fire was dispatched; fire dropped", task_id)
            outcome = ExecutionOutcome(
                completed_at=self._clock.wall(),
                success=False,
                error_message="not started: the task was deleted or disabled before its "
                "fire's (jittered) instant",
            )
            await self._owed(
                f"ending the dropped fire of {task_id}",
                functools.partial(self._store.finish_execution, one.execution_id, outcome),
            )

    # ------------------------------------------------------------ the one write path

    async def _record(self, fires: Sequence[Fire], marks: Sequence[RunMark] = ()) -> list[Fired]:
        """Record ``fires`` and ``marks`` in one write, fenced by the lease, each attempt once."""
        started = self._clock.wall()
        news = [
            NewExecution(
                task_id=fire.task.task_id,
                scheduled_at=fire.instant,
                started_at=started,
                retry_count=fire.attempt - 1,
                trigger=fire.reason,
                start_key=fire.start_key,
                parent_key=fire.parent_key,
                spawn_key=fire.spawn_key,
                on_parent_cancel=fire.on_parent_cancel,
            )
            for fire in fires
        ]
        stored = await self._owed(
            f"recording {len(news)} fires",
            functools.partial(self._store.record_fires, news, marks=marks, fence=self._lease.fence),
        )
        return [Fired(fire, one) for fire, one in zip(fires, stored, strict=True)]

    async def _record_missed(self, task: CompiledTask, plan: MisfirePlan) -> None:
        runs = [
            NewMissedRun(first_at=m.instant, last_at=m.instant, count=1, reason=m.reason)
            for m in plan.missed
        ]
        if plan.unlisted is not None:
            gap = plan.unlisted
            runs.insert(
                0,
                NewMissedRun(
                    first_at=gap.first, last_at=gap.last, count=gap.count, reason=gap.reason
                ),
            )
        if not runs:
            return
        for start in range(0, len(runs), MAX_MISSED_BATCH):
            await self._owed(
                f"recording the missed runs of {task.task_id}",
                functools.partial(
                    self._store.record_missed,
                    task.task_id,
                    runs[start : start + MAX_MISSED_BATCH],
                    fence=self._lease.fence,
                ),
            )
        self._counters["missed"] += sum(run.count for run in runs)
        self._log.info("task %s: %d fires not run (%s)", task.task_id, len(runs), runs[-1].reason)
        await self._events.status(
            task.record.owner, task.task_id, "missed", runs=[plain(run) for run in runs[-10:]]
        )

    # ------------------------------------------------------------ dispatching

    async def _dispatch(self, fired: Sequence[Fired]) -> None:
        """Dispatch the recorded fires that are owed (a duplicate that finished is not), then
        publish each ``queued``."""
        owed: list[Fired] = []
        for one in fired:
            if one.stored.duplicate:
                self._counters["duplicate_fires"] += 1
                if one.stored.success is not None or one.fire.start_key is not None:
                    continue  # ran already, or a start of a run started before: nothing owed
            else:
                self._counters["fires"] += 1
            owed.append(one)
        await self._send(await self._admit(owed, self._gates))

    @staticmethod
    async def _admit(fired: list[Fired], gates: Sequence[FireGate]) -> list[Fired]:
        for gate in gates:
            if not fired:
                break
            fired = await gate.admit(fired)
        return fired

    async def _send(self, owed: Sequence[Fired]) -> None:
        """Dispatch fires the gates let go, then publish each ``queued``."""
        await self._dispatch_all(
            [
                (f.fire.task, f.execution_id, f.fire.instant, f.fire.attempt, f.fire.wakes)
                for f in owed
            ]
        )
        for one in owed:
            fire = one.fire
            await self._events.status(
                fire.task.record.owner,
                fire.task.task_id,
                "queued",
                execution_id=one.execution_id,
                scheduled_at=fire.instant.isoformat(),
                attempt=fire.attempt,
                coalesced=fire.coalesced,
                reason=fire.reason,
            )

    async def _dispatch_all(
        self, dispatches: Sequence[tuple[CompiledTask, str, datetime, int, int]]
    ) -> None:
        """Queue every dispatch, then wait until the broker holds them all."""
        confirmations = [
            self._enqueue(
                dispatch_queue(task.task_id),
                self._dispatch_payload(task, execution_id, instant, attempt, wakes),
                work_id(execution_id),
            )
            for task, execution_id, instant, attempt, wakes in dispatches
        ]
        if not confirmations:
            return
        done, pending = await asyncio.wait(confirmations, timeout=DISPATCH_TIMEOUT_S)
        for confirmed in done:
            confirmed.result()  # raises why the broker refused it
        if pending:
            raise AskTimeout(
                f"broker did not confirm {len(pending)} dispatches within {DISPATCH_TIMEOUT_S}s"
            )
        self._counters["dispatched"] += len(confirmations)

    def _dispatch_payload(
        self, task: CompiledTask, execution_id: str, instant: datetime, attempt: int, wakes: int
    ) -> Payload:
        return Dispatch(
            execution_id=execution_id,
            task_id=task.task_id,
            task_class=task.record.task_class,
            scheduled_at=instant,
            attempt=attempt,
            timeout_s=task.policies.timeout_s(self._settings),
            allow_overlap=task.policies.run.allow_overlap,
            config=task.record.config,
            owner=task.record.owner,
            wakes=wakes,
        ).payload()
