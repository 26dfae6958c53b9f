"""The run gate: overlap policy and concurrency limits, held by the one scheduler that leads, so
that they hold across every executor of a category, in any process or host
(docs/scheduling.md#overlap-and-concurrency).

The leader dispatches every fire and every result comes back to it, so it alone can count: the
runs of each task in progress (``scheduler.overlap.OverlapBook``, from a run's first dispatch
until its final result) and the attempts out per category, in total and per concurrency key
(``scheduler.overlap.SlotBook``, from an attempt's dispatch until its result). A fire the
overlap rule skips is recorded missed with its reason and its execution finished as not run; a
fire held waits in memory, recorded (every fire reaching a gate is), so that a leader that dies
leaves it unfinished and the next one's recovery passes it through the gates again.

A run may end without a result reaching the gate (cancelled while suspended, a retry dropped
with its task): before a new fire of a task is judged against runs with no attempt out, those
are looked up (a retry pending, a run row not final, an attempt not finished) and the ended
ones forgotten. An attempt whose result never comes (the executor found it finished, or
quarantined it) holds its slot until the sweep every ``SWEEP_S`` finds it finished in the store.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime

from actors.scheduling.background import Background
from actors.scheduling.definitions import CompiledTask
from actors.scheduling.events import Events
from actors.scheduling.firing import Fired, Firing
from actors.scheduling.lease import LeaseKeeper
from actors.scheduling.owed import Owed
from actors.scheduling.protocol import RunResult
from actors.scheduling.roster import Roster
from actors.storing.client import StoreClient
from bus import Refused
from scheduler import Clock, Timer
from scheduler.overlap import Ask, Limits, OverlapBook, SlotBook, Verdict
from store.errors import NotFound, StoreError
from store.records import FINAL_RUN_STATES, ExecutionOutcome, NewMissedRun, run_key
from tasks.permissions import is_child_task

SWEEP_S = 60.0  # how often attempts out are checked against the store (a result lost)
SWEEP_BATCH = 500  # execution ids looked up per request
MAX_KEY_CHARS = 200
# Fires held, never skipped, behind a run in progress: the misfire policy or a takeover decided
# they run (what the hold says).
OWED = {"recovery": "dispatched again", "catch-up": "a catch-up"}
PLANNED = ("schedule", "catch-up")  # the fire loop's plans, whose runs are decided together

Cancel = Callable[[str, str], Awaitable[object]]  # (run key, reason): cancel the run
Pending = Callable[[str], list[tuple[datetime, int]]]  # a task's retries waiting


def concurrency_key(task: CompiledTask) -> str | None:
    """``<option>=<value>`` of the task's concurrency key (None: none, or the option unset)."""
    name = task.policies.run.concurrency_key
    if name is None or name not in task.record.config:
        return None
    value = json.dumps(task.record.config[name], sort_keys=True, default=str)
    return f"{name}={value}"[:MAX_KEY_CHARS]


class RunGate:
    """A FireGate (``actors.scheduling.firing``): the overlap rule of each fire's task, then the
    concurrency limits."""

    def __init__(
        self,
        *,
        firing: Firing,
        store: StoreClient,
        owed: Owed,
        lease: LeaseKeeper,
        roster: Roster,
        events: Events,
        counters: Counter[str],
        clock: Clock,
        background: Background,
        limits: Limits,
        pending: Pending,
        cancel: Cancel,
        log: logging.Logger,
    ) -> None:
        self._firing = firing
        self._store = store
        self._owed = owed
        self._lease = lease
        self._roster = roster
        self._events = events
        self._counters = counters
        self._clock = clock
        self._background = background
        self._pending = pending
        self._cancel = cancel
        self._log = log
        self.overlap: OverlapBook[Fired] = OverlapBook()
        self.slots: SlotBook[Fired] = SlotBook(limits)
        self._sweep: Timer | None = None
        self._outbox: list[Ask[Fired]] = []  # held fires that go on, to be dispatched
        self._flushing = False
        self._holding: set[str] = set()  # execution ids held by either book
        # (owner, reason) of the concurrency holds announced since fires began to wait
        self._announced: set[tuple[str, str]] = set()

    # ------------------------------------------------------------ FireGate

    async def admit(self, fired: Sequence[Fired]) -> list[Fired]:
        going: list[Fired] = []
        planned: set[str] = set()  # tasks with a run of a plan among these fires
        for one in fired:
            if one.execution_id in self._holding:
                continue  # recorded again (a duplicate) while held here: it goes once
            ask = self._ask(one)
            if one.fire.reason in PLANNED:
                if ask.task_id in planned and not ask.owed:  # its plan decided it runs too
                    ask = replace(ask, owed="a run of the same plan")
                planned.add(ask.task_id)
            if not ask.continued and self.overlap.idle(ask.task_id):
                for released in await self._settle_idle(ask.task_id):
                    going.extend(a.item for a in await self._slot(released))
            verdict = self.overlap.decide(ask)
            if verdict.action == "go":
                self._arm_sweep()
                going.extend(a.item for a in await self._slot(ask))
                continue
            for dropped in verdict.dropped:
                await self._skip(dropped, "overlap: superseded by a later fire (cancel_other)")
            if verdict.action == "skip":
                await self._skip(ask, verdict.reason)
                continue
            await self._held(ask, verdict.reason)
            if verdict.action == "cancel":
                self._cancel_runs(ask, verdict)
        return going

    async def attempt_ended(self, result: RunResult, *, final: bool) -> None:
        """Free the attempt's slot and, if final, its run; what goes on now is dispatched
        beside the result's handler, together with what the results arriving with it free."""
        going = self.slots.release(result.execution_id)
        if self._announced and not self.slots.waiting():
            self._announced.clear()  # nothing waits for a slot: the next hold is news
        for ask in self.overlap.attempt_ended(result.task_id, result.scheduled_at, final=final):
            going.extend(await self._slot(ask))
        if going:
            self._outbox.extend(going)
            if not self._flushing:
                self._flushing = True
                self._background.spawn(self._flush())

    async def _flush(self) -> None:
        """Dispatch what the outbox holds, in batches, until it is empty."""
        try:
            await asyncio.sleep(0)  # the results handled beside this one add theirs first
            while self._outbox:
                batch, self._outbox = self._outbox, []
                await self._resume(batch)
        finally:
            self._flushing = False

    # ------------------------------------------------------------ judging

    def _ask(self, fired: Fired) -> Ask[Fired]:
        fire = fired.fire
        task = fire.task
        run = task.policies.run
        return Ask(
            item=fired,
            task_id=task.task_id,
            instant=fire.instant,
            execution_id=fired.execution_id,
            rule=fire.overlap or run.overlap,
            continued=fire.attempt > 1 or fire.wakes > 0,
            owed=OWED.get(fire.reason, ""),
            category=task.task_id.partition(".")[0],
            key=None if run.concurrency_key is None else concurrency_key(task),
            key_limit=run.concurrency_key_limit,
        )

    async def _slot(self, ask: Ask[Fired]) -> list[Ask[Fired]]:
        """``[ask]`` if it may be dispatched now; else it waits for a slot (announced)."""
        if not self.slots.needed(ask):
            return [ask]
        went, why = self.slots.take(ask)
        if went:
            return [ask]
        owner = ask.item.fire.task.record.owner
        if (owner, why) in self._announced:  # said once while fires wait for that reason
            self._holding.add(ask.execution_id)
            self._counters["held"] += 1
            return []
        self._announced.add((owner, why))
        await self._held(ask, why)
        return []

    async def _settle_idle(self, task_id: str) -> list[Ask[Fired]]:
        """Forget the task's runs with no attempt out that ended without a result reaching
        here; the held fires that go on because of it."""
        going: list[Ask[Fired]] = []
        for instant in self.overlap.idle(task_id):
            if not await self._alive(task_id, instant):
                self._log.info("run %s ended unseen: forgotten", run_key(task_id, instant))
                going.extend(self.overlap.forget(task_id, instant))
        return going

    async def _alive(self, task_id: str, instant: datetime) -> bool:
        if any(at == instant for at, _ in self._pending(task_id)):
            return True
        try:
            latest = await self._store.latest_attempt(task_id, instant)
            if latest is not None and latest.success is None:
                return True
            row = await self._store.get_run(run_key(task_id, instant))
        except NotFound:
            return False
        except StoreError as exc:
            self._log.warning("run %s not looked up (%s): kept", run_key(task_id, instant), exc)
            return True
        return row.state not in FINAL_RUN_STATES

    # ------------------------------------------------------------ what it does

    async def _held(self, ask: Ask[Fired], reason: str) -> None:
        fire = ask.item.fire
        self._holding.add(ask.execution_id)
        self._counters["held"] += 1
        await self._events.status(
            fire.task.record.owner,
            ask.task_id,
            "buffered",
            execution_id=ask.execution_id,
            scheduled_at=ask.instant.isoformat(),
            attempt=fire.attempt,
            reason=reason,
        )

    async def _skip(self, ask: Ask[Fired], reason: str) -> None:
        """Record the fire missed with ``reason`` and finish its execution as not run."""
        fire = ask.item.fire
        task_id = ask.task_id
        self._holding.discard(ask.execution_id)
        missed = NewMissedRun(first_at=ask.instant, last_at=ask.instant, count=1, reason=reason)
        await self._owed(
            f"recording the skipped fire of {task_id}",
            functools.partial(
                self._store.record_missed,
                task_id,
                [missed],
                fence=self._lease.fence,
                fired=True,
            ),
        )
        outcome = ExecutionOutcome(
            completed_at=self._clock.wall(),
            success=False,
            error_message=f"not run: skipped by overlap policy {ask.rule} ({reason})",
        )
        await self._owed(
            f"ending the skipped fire of {task_id}",
            functools.partial(
                self._store.finish_execution,
                ask.execution_id,
                outcome,
                fence=self._lease.fence,
            ),
        )
        self._counters["skipped_overlap"] += 1
        self._log.info("task %s fire %s %s", task_id, ask.instant.isoformat(), reason)
        await self._events.status(
            fire.task.record.owner,
            task_id,
            "skipped",
            execution_id=ask.execution_id,
            scheduled_at=ask.instant.isoformat(),
            reason=reason,
        )

    def _cancel_runs(self, ask: Ask[Fired], verdict: Verdict[Fired]) -> None:
        reason = f"cancelled by overlap policy cancel_other: fire {ask.instant.isoformat()}"
        for instant in verdict.cancel:
            self._background.spawn(self._cancel_run(ask.task_id, instant, reason))

    async def _cancel_run(self, task_id: str, instant: datetime, reason: str) -> None:
        """Cancel a run in progress; one found ended already is forgotten (its result may never
        come: it ended suspended, say)."""
        key = run_key(task_id, instant)
        try:
            await self._cancel(key, reason)
            self._counters["cancelled_overlap"] += 1
            return
        except (Refused, StoreError) as exc:  # it ended already, say
            self._log.info("run %s not cancelled (%s)", key, exc)
        if not await self._alive(task_id, instant):
            going: list[Ask[Fired]] = []
            for released in self.overlap.forget(task_id, instant):
                going.extend(await self._slot(released))
            await self._resume(going)

    async def _resume(self, going: list[Ask[Fired]]) -> None:
        """Dispatch the held fires that go on now (through the gates after this one); those
        whose task was deleted or disabled meanwhile are ended as not run, freeing their slot."""
        while going:
            self._holding.difference_update(a.execution_id for a in going)
            live = [a.item for a in going if self._still_fired(a.item)]
            gone = [a for a in going if not self._still_fired(a.item)]
            going = []
            for ask in gone:
                await self._drop(ask)
                going.extend(self.slots.release(ask.execution_id))
                for released in self.overlap.attempt_ended(ask.task_id, ask.instant, final=True):
                    going.extend(await self._slot(released))
            if live:
                await self._firing.resume(live, after=self)

    def _still_fired(self, fired: Fired) -> bool:
        task_id = fired.fire.task.task_id
        return task_id in self._roster or is_child_task(task_id) or fired.fire.attempt > 1

    async def _drop(self, ask: Ask[Fired]) -> None:
        outcome = ExecutionOutcome(
            completed_at=self._clock.wall(),
            success=False,
            error_message="not started: the task was deleted or disabled while its fire was held",
        )
        await self._owed(
            f"ending the held fire of {ask.task_id}",
            functools.partial(self._store.finish_execution, ask.execution_id, outcome),
        )

    # ------------------------------------------------------------ lost results

    def _arm_sweep(self) -> None:
        if self._sweep is None:
            self._sweep = self._clock.call_later(SWEEP_S, self._on_sweep)

    def _on_sweep(self) -> None:
        self._sweep = None
        self._background.spawn(self.sweep())

    async def sweep(self) -> None:
        """Free what attempts the store shows finished hold (their result never came): their
        slot, and their run's count of attempts out (an idle run is looked up before its task's
        next fire is judged)."""
        runs = self.overlap.out_attempts()
        ids = sorted(set(self.slots.out_ids()) | set(runs))
        going: list[Ask[Fired]] = []
        for start in range(0, len(ids), SWEEP_BATCH):
            try:
                outcomes = await self._store.execution_outcomes(ids[start : start + SWEEP_BATCH])
            except StoreError as exc:
                self._log.warning("attempts out not looked up (%s)", exc)
                break
            for execution_id, success in outcomes.items():
                if success is None:
                    continue
                self._counters["results_lost"] += 1
                going.extend(self.slots.release(execution_id))
                if execution_id in runs:
                    self.overlap.lost(*runs[execution_id])
        await self._resume(going)
        if len(self.slots) or self.overlap.out_attempts():
            self._arm_sweep()

    def cancel_sweep(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
