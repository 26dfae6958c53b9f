"""Limited runs: ``run_policy.max_runs`` (docs/scheduling.md#pausing-limited-runs-and-describe).

The store counts a task's fires (``fire_count``: the first attempts of its schedule, catch-up and
backfill fires recorded anew, in the same write that records them). Before a plan of a task with
``max_runs`` is recorded, ``trim`` keeps only the runs that remain (``max_runs - fire_count``);
the others are recorded as missed with the reason ``max_runs reached``. Once the plan is
recorded, ``settled`` disables the task if its count reached the limit: stored ``enabled`` false
with the note ``reached max_runs N``, out of the roster, status event ``max_runs_reached``. A
jittered last fire is dispatched first: the task is disabled once its delay has passed.

Triggers, retries and wakes do not count. To run a finished task again, raise ``max_runs``
(``task update``) and enable it: the count stays.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import replace

from actors.scheduling import definitions
from actors.scheduling.background import Background
from actors.scheduling.definitions import CompiledTask
from actors.scheduling.events import Events
from actors.scheduling.roster import Roster
from actors.storing.client import StoreClient
from scheduler import Clock, MisfirePlan, MissedRun, sleep
from store.errors import Conflict, LeaseLost
from store.records import TaskRecord

TRIMMED_REASON = "max_runs reached"
PUT_TRIES = 3  # a finish whose write met a concurrent change reads the task again


def finished_note(max_runs: int) -> str:
    return f"reached max_runs {max_runs}"


def trimmed(plan: MisfirePlan, remaining: int) -> MisfirePlan:
    """``plan`` with at most ``remaining`` runs, the later ones missed with TRIMMED_REASON."""
    if len(plan.runs) <= remaining:
        return plan
    kept, dropped = plan.runs[:remaining], plan.runs[remaining:]
    missed = tuple(MissedRun(run.instant, TRIMMED_REASON, run.late_s) for run in dropped)
    return MisfirePlan(kept, plan.missed + missed, plan.unlisted)


class RunLimits:
    def __init__(
        self,
        *,
        store: StoreClient,
        roster: Roster,
        events: Events,
        counters: Counter[str],
        clock: Clock,
        background: Background,
        log: logging.Logger,
    ) -> None:
        self._store = store
        self._roster = roster
        self._events = events
        self._counters = counters
        self._clock = clock
        self._background = background
        self._log = log

    async def trim(self, task: CompiledTask, plan: MisfirePlan) -> MisfirePlan:
        """``plan`` with only the runs ``max_runs`` leaves (module docstring)."""
        limit = task.policies.run.max_runs
        if limit is None or not plan.runs:
            return plan
        count = (await self._store.get_task(task.task_id)).fire_count
        kept = trimmed(plan, max(0, limit - count))
        self._counters["max_runs_trimmed"] += len(plan.runs) - len(kept.runs)
        return kept

    async def settled(self, task: CompiledTask, delay_s: float = 0.0) -> None:
        """After a plan of ``task`` was recorded: disable it if it reached ``max_runs``, after
        ``delay_s`` (its last fire's jitter)."""
        limit = task.policies.run.max_runs
        if limit is None:
            return
        stored = await self._store.get_task(task.task_id)
        if stored.fire_count < limit or not stored.enabled:
            return
        if delay_s > 0:
            self._background.spawn(self._finish_later(task.task_id, limit, delay_s))
        else:
            await self._finish(stored, limit)

    async def _finish_later(self, task_id: str, limit: int, delay_s: float) -> None:
        await sleep(self._clock, delay_s)
        await self._finish(await self._store.get_task(task_id), limit)

    async def _finish(self, stored: TaskRecord, limit: int) -> None:
        """Store ``stored`` disabled with its note, and fire it no more."""
        for _ in range(PUT_TRIES):
            if not stored.enabled:
                return
            spec = replace(definitions.spec_of(stored), enabled=False, note=finished_note(limit))
            try:
                written = await self._store.put_task(spec, expected_version=stored.version)
            except LeaseLost:
                raise
            except Conflict:  # changed meanwhile: read it again, with its limit now
                stored = await self._store.get_task(stored.task_id)
                limit = (stored.run_policy or {}).get("max_runs") or 0
                if not limit or stored.fire_count < limit:
                    return
                continue
            self._roster.remove(stored.task_id)  # its last run and that run's retries go on
            record = written.record
            if record.next_run is not None:
                record = await self._store.mark_run(record.task_id, next_run=None)
            self._counters["max_runs_reached"] += 1
            self._log.info("task %s reached max_runs %d: disabled", record.task_id, limit)
            await self._events.status(
                record.owner,
                record.task_id,
                "max_runs_reached",
                max_runs=limit,
                fire_count=record.fire_count,
                note=record.note,
            )
            return
        self._log.warning("task %s reached max_runs %d but kept changing", stored.task_id, limit)
