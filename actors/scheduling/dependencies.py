"""Dependencies between tasks (``run_policy.depends_on``): the first gate of every owed fire, and
the checks of a create, an update and a delete (docs/scheduling.md#dependencies).

**The gate.** A first attempt of a fire of a task with dependencies (a schedule's, a catch-up's,
a backfill's, a trigger's; a takeover's re-dispatch of one) goes on only once every dependency
has a succeeded run for its logical instant (``scheduler.dependencies.logical_instant``), as the
store holds it. Otherwise it is held here (status event ``waiting``) and checked again whenever a
run of one of its dependencies ends, and at its wait limit (``depends_wait_s`` after the fire was
recorded); a held fire let go passes the later gates (``Firing.resume``). At the limit, or at once
when a dependency's run failed for good (or there is none to wait for), the fire is *blocked*: its
execution is finished as not run with the error ``blocked: dependency <id> ...``, status event
``blocked``; the fires waiting on it are checked again (it failed for good).

Retries, wakes and child runs pass untouched: their run passed the gate at its first attempt. A
fire of a task without dependencies costs one attribute test. Held fires live in this leader's
memory only; they are recorded and unfinished in the store, so the next leader's recovery passes
them through the gate again, and their wait limit still counts from when they were recorded.

**The checks.** A create or an update that sets ``depends_on`` is refused (``invalid``) if a
dependency is unknown or the task itself, or if it closes a cycle (spelled out: ``a -> b -> a``,
each task depending on the next); ``denied`` if the requester may not manage a dependency. A
delete of a task that others depend on is refused (``conflict``) naming them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from actors.scheduling import definitions
from actors.scheduling.background import Background
from actors.scheduling.definitions import CompiledTask
from actors.scheduling.events import Events
from actors.scheduling.firing import Fire, Fired, Firing
from actors.scheduling.lease import LeaseKeeper
from actors.scheduling.owed import Owed
from actors.scheduling.owners import Owners
from actors.scheduling.protocol import RunResult
from actors.scheduling.retries import Retries, failure_of, tries
from actors.scheduling.roster import Roster
from actors.storing.client import StoreClient
from config.errors import ConfigError
from config.sections import SchedulerSettings, check_task_id
from scheduler import Clock, Timer
from scheduler.dependencies import (
    Check,
    blocked_reason,
    dependents,
    find_cycle,
    judge,
    logical_instant,
    spell_cycle,
)
from store.errors import Conflict, InvalidValue, NotFound
from store.records import ExecutionOutcome, ExecutionRecord, TaskRecord, run_key

FIELD = "run_policy.depends_on"
TASK_PAGE = 1000  # tasks read per request when looking for a task's dependents


def _gated(fire: Fire) -> bool:
    """Whether the fire waits for its task's dependencies: a first attempt that is not a
    child run's (a retry or a wake belongs to a run that passed the gate)."""
    return (
        bool(fire.task.policies.run.depends_on)
        and fire.attempt == 1
        and fire.wakes == 0
        and fire.parent_key is None
    )


def stored_depends_on(record: TaskRecord) -> list[str]:
    """The stored ``depends_on`` of a task (what its run policy map holds, unchecked)."""
    policy = record.run_policy or {}
    found = policy.get("depends_on") if isinstance(policy, dict) else None
    return [str(task_id) for task_id in found] if isinstance(found, list | tuple) else []


@dataclass(slots=True)
class _Held:
    """A fire waiting for dependencies: since when it was recorded, its wait limit's timer and
    the dependencies it still waits for."""

    fired: Fired
    since: datetime
    waiting_on: frozenset[str]
    timer: Timer | None = field(default=None)


class DependencyGate:
    """The FireGate of ``depends_on`` (see the module's docstring)."""

    def __init__(
        self,
        *,
        store: StoreClient,
        owed: Owed,
        lease: LeaseKeeper,
        roster: Roster,
        firing: Firing,
        retries: Retries,
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
        self._firing = firing
        self._retries = retries
        self._events = events
        self._counters = counters
        self._clock = clock
        self._settings = settings
        self._background = background
        self._log = log
        self._held: dict[str, _Held] = {}  # by execution id
        self._waiting: dict[str, set[str]] = {}  # dependency id -> execution ids held for it
        self._ended = 0  # runs ended (final results, blocked fires): a fire held after checking
        # its dependencies is checked again if one ended meanwhile

    def __len__(self) -> int:
        """How many fires are held."""
        return len(self._held)

    def held(self, task_id: str) -> list[Fired]:
        """The task's fires held, oldest instant first."""
        found = [h.fired for h in self._held.values() if h.fired.fire.task.task_id == task_id]
        return sorted(found, key=lambda fired: fired.fire.instant)

    def cancel_all(self) -> None:
        """Stop every wait limit's timer (the scheduler stops; the next leader recovers)."""
        for held in self._held.values():
            if held.timer is not None:
                held.timer.cancel()
        self._held.clear()
        self._waiting.clear()

    # ------------------------------------------------------------ the gate

    async def admit(self, fired: Sequence[Fired]) -> list[Fired]:
        if not any(_gated(one.fire) for one in fired):
            return list(fired)  # the fast path: no fire here has dependencies
        gated = [one for one in fired if _gated(one.fire)]
        ended = self._ended
        judged = await asyncio.gather(*(self._judge(one) for one in gated))
        checks = {one.execution_id: found for one, found in zip(gated, judged, strict=True)}
        owed: list[Fired] = []
        for one in fired:
            found = checks.get(one.execution_id)
            if found is None:
                owed.append(one)
            elif one.execution_id in self._held:
                continue  # held here already (dispatched again meanwhile)
            elif (failed := _first(found, "failed")) is not None:
                await self._block(one, blocked_reason(failed))
            elif all(check.state == "met" for check in found):
                owed.append(one)
            else:
                await self._hold(one, found, ended)
        return owed

    async def attempt_ended(self, result: RunResult, *, final: bool) -> None:
        if not final:
            return
        self._ended += 1
        if result.task_id in self._waiting:
            await self.recheck(result.task_id)

    async def recheck(self, dependency: str) -> None:
        """Check again the fires held for ``dependency``: let go those whose dependencies are
        all met, block those one of whose dependencies failed for good."""
        ids = sorted(
            self._waiting.get(dependency, ()),
            key=lambda eid: self._held[eid].fired.fire.instant,
        )
        if not ids:
            return
        held = [self._held[eid] for eid in ids]
        judged = await asyncio.gather(*(self._judge(h.fired) for h in held))
        released: list[Fired] = []
        for one, found in zip(held, judged, strict=True):
            if self._held.get(one.fired.execution_id) is not one:
                continue  # settled meanwhile
            if (failed := _first(found, "failed")) is not None:
                self._forget(one)
                await self._block(one.fired, blocked_reason(failed))
            elif all(check.state == "met" for check in found):
                self._forget(one)
                released.append(one.fired)
            else:
                self._wait_for(one, found)
        await self._release(released)

    # ------------------------------------------------------------ judging

    async def _judge(self, fired: Fired) -> list[Check]:
        fire = fired.fire
        return list(
            await asyncio.gather(
                *(self._judge_one(dep, fire.instant) for dep in fire.task.policies.run.depends_on)
            )
        )

    async def _judge_one(self, dependency: str, instant: datetime) -> Check:
        task = await self._task_of(dependency)
        if task is None:
            return Check(dependency, None, "failed", "is not a stored task that compiles")
        logical = logical_instant(task.schedule, instant)
        if logical is None:
            return judge(dependency, instant, None, None, retrying=False)
        latest = await self._owed(
            f"reading the run of {dependency} at {logical.isoformat()}",
            functools.partial(self._store.latest_attempt, dependency, logical),
        )
        if latest is None:
            return judge(dependency, instant, logical, None, retrying=False)
        attempt = (latest.success, latest.error_message)
        retrying = latest.success is False and self._retried(task, latest)
        return judge(dependency, instant, logical, attempt, retrying=retrying)

    def _retried(self, task: CompiledTask, failed: ExecutionRecord) -> bool:
        """Whether the failed attempt's run goes on: a retry of it is pending, or its task's
        retry policy retries it (a failure the executor stored whose result this leader has not
        settled yet, or a new leader has not decided again). An attempt the scheduler ended
        (blocked, skipped: no executor's ``error_type``) or that a cancel ended is not."""
        if any(at == failed.scheduled_at for at, _ in self._retries.pending(task.task_id)):
            return True
        ran = isinstance(failed.result, dict) and "error_type" in failed.result
        if not ran or task.task_id not in self._roster:
            return False  # the scheduler ended it (blocked, skipped), or it is no longer fired
        failure = failure_of(failed)
        if "RunCancelled" in failure.error_type:
            return False
        key = f"{task.task_id}@{failed.scheduled_at.isoformat()}"
        return task.policies.retry.decide(tries(failure), failure.error_type, key).retry

    async def _task_of(self, task_id: str) -> CompiledTask | None:
        """The dependency: the roster's, or (disabled) the stored one compiled."""
        task = self._roster.get(task_id)
        if task is not None:
            return task
        try:
            record = await self._owed(
                f"reading the dependency {task_id}",
                functools.partial(self._store.get_task, task_id),
            )
            return definitions.compile_task(record, self._settings)
        except (NotFound, InvalidValue):
            return None

    # ------------------------------------------------------------ holding

    async def _hold(self, fired: Fired, checks: list[Check], ended: int) -> None:
        """Hold the fire (``checks``: what its dependencies were when ``ended`` runs had
        ended), or block it if its wait limit has passed already."""
        since = self._clock.wall()
        if fired.stored.duplicate:  # recorded before, by this or an earlier leader
            try:
                stored = await self._owed(
                    f"reading the fire of {fired.fire.task.task_id}",
                    functools.partial(self._store.get_execution, fired.execution_id),
                )
                since = stored.started_at
            except NotFound:
                pass
        wait_s = fired.fire.task.policies.run.depends_wait_s
        left_s = (since + timedelta(seconds=wait_s) - self._clock.wall()).total_seconds()
        if left_s <= 0:
            waiting = _first(checks, "waiting")
            assert waiting is not None
            await self._block(fired, blocked_reason(waiting, wait_s=wait_s))
            return
        held = _Held(fired, since, frozenset())
        self._held[fired.execution_id] = held
        self._wait_for(held, checks)
        execution_id = fired.execution_id
        held.timer = self._clock.call_later(
            left_s, lambda: self._background.spawn(self._expire(execution_id))
        )
        self._counters["held_dependencies"] += 1
        fire = fired.fire
        await self._events.status(
            fire.task.record.owner,
            fire.task.task_id,
            "waiting",
            execution_id=execution_id,
            scheduled_at=fire.instant.isoformat(),
            until=(since + timedelta(seconds=wait_s)).isoformat(),
            dependencies=[_waited(check) for check in checks if check.state != "met"],
        )
        if self._ended != ended:  # a run ended while the fire was checked: check it again
            for dependency in held.waiting_on:
                self._background.spawn(self.recheck(dependency))

    def _wait_for(self, held: _Held, checks: list[Check]) -> None:
        """Index the held fire under the dependencies it still waits for."""
        execution_id = held.fired.execution_id
        for dependency in held.waiting_on:
            self._waiting.get(dependency, set()).discard(execution_id)
        held.waiting_on = frozenset(c.dependency for c in checks if c.state != "met")
        for dependency in held.waiting_on:
            self._waiting.setdefault(dependency, set()).add(execution_id)
        for dependency in [d for d, ids in self._waiting.items() if not ids]:
            del self._waiting[dependency]

    def _forget(self, held: _Held) -> None:
        execution_id = held.fired.execution_id
        self._held.pop(execution_id, None)
        if held.timer is not None:
            held.timer.cancel()
        for dependency in held.waiting_on:
            ids = self._waiting.get(dependency)
            if ids is not None:
                ids.discard(execution_id)
                if not ids:
                    del self._waiting[dependency]

    async def _expire(self, execution_id: str) -> None:
        """The held fire's wait limit passed: check once more, then let it go or block it."""
        held = self._held.get(execution_id)
        if held is None:
            return
        found = await self._judge(held.fired)
        if self._held.get(execution_id) is not held:
            return
        self._forget(held)
        if all(check.state == "met" for check in found):
            await self._release([held.fired])
            return
        failed = _first(found, "failed")
        if failed is not None:
            await self._block(held.fired, blocked_reason(failed))
            return
        waiting = _first(found, "waiting")
        assert waiting is not None
        wait_s = held.fired.fire.task.policies.run.depends_wait_s
        await self._block(held.fired, blocked_reason(waiting, wait_s=wait_s))

    async def _release(self, released: list[Fired]) -> None:
        """Let held fires go on through the later gates; one whose task was deleted or
        disabled meanwhile ends as not started."""
        going: list[Fired] = []
        for one in released:
            if one.fire.task.task_id in self._roster:
                going.append(one)
                continue
            await self._finish(
                one,
                "not started: the task was deleted or disabled while its fire waited for its "
                "dependencies",
            )
        self._counters["released_dependencies"] += len(going)
        if going:
            await self._firing.resume(going, after=self)

    # ------------------------------------------------------------ blocking

    async def _block(self, fired: Fired, reason: str) -> None:
        """Record the fire as blocked, then check again what waits for its task."""
        await self._finish(fired, reason)
        self._ended += 1
        fire = fired.fire
        task_id = fire.task.task_id
        self._counters["blocked"] += 1
        self._log.info("task %s fire %s %s", task_id, fire.instant.isoformat(), reason)
        await self._events.status(
            fire.task.record.owner,
            task_id,
            "blocked",
            execution_id=fired.execution_id,
            scheduled_at=fire.instant.isoformat(),
            reason=reason,
        )
        if task_id in self._waiting:  # its run for this instant failed for good
            self._background.spawn(self.recheck(task_id))

    async def _finish(self, fired: Fired, reason: str) -> None:
        """End the fire's execution as not run (and its run, if it has a row: a start's)."""
        now = self._clock.wall()
        outcome = ExecutionOutcome(completed_at=now, success=False, error_message=reason)
        await self._owed(
            f"ending the blocked fire of {fired.fire.task.task_id}",
            functools.partial(
                self._store.finish_execution, fired.execution_id, outcome, fence=self._lease.fence
            ),
        )
        if fired.fire.start_key is not None:
            key = run_key(fired.fire.task.task_id, fired.fire.instant)
            await self._owed(
                f"ending the blocked run {key}",
                functools.partial(self._store.finish_run, key, "failed", reason=reason, now=now),
            )


def _first(checks: Sequence[Check], state: str) -> Check | None:
    return next((check for check in checks if check.state == state), None)


def _waited(check: Check) -> dict[str, Any]:
    logical = None if check.logical is None else check.logical.isoformat()
    return {"task_id": check.dependency, "logical_instant": logical, "why": check.why}


# ------------------------------------------------------------------ the requests' checks


async def check_definition(
    store: StoreClient,
    owners: Owners,
    sender: str,
    task_id: str,
    depends_on: Sequence[str],
) -> None:
    """Refuse a definition of ``task_id`` (``sender``'s create or update) whose ``depends_on``
    names an unknown task (``invalid``), the task itself, a task ``sender`` may not manage
    (``denied``), or closes a cycle (``invalid``, spelled out)."""
    if not depends_on:
        return
    graph: dict[str, list[str]] = {}
    for dependency in depends_on:
        try:
            check_task_id(dependency)
        except ConfigError as error:
            raise InvalidValue(FIELD, f"{dependency!r}: expected {error.expected}") from error
        if dependency == task_id:
            raise InvalidValue(FIELD, f"{task_id!r} cannot depend on itself")
        try:
            record = await store.get_task(dependency)
        except NotFound:
            raise InvalidValue(FIELD, f"{dependency!r}: no such task") from None
        owners.check(sender, record.owner, dependency, "depend on")
        graph[dependency] = stored_depends_on(record)
    # the tasks the dependencies depend on, and so on: read until none is left unread
    unread = [d for deps in graph.values() for d in deps if d not in graph and d != task_id]
    while unread:
        found = unread.pop()
        if found in graph:
            continue
        try:
            graph[found] = stored_depends_on(await store.get_task(found))
        except NotFound:
            graph[found] = []
        unread.extend(d for d in graph[found] if d not in graph and d != task_id)
    cycle = find_cycle(task_id, depends_on, graph)
    if cycle is not None:
        raise InvalidValue(
            FIELD,
            f"{list(depends_on)!r} closes a cycle: {spell_cycle(cycle)} (each depends on the next)",
        )


async def check_deletable(store: StoreClient, task_id: str) -> None:
    """Refuse (``conflict``) the delete of a task that other tasks depend on, naming them."""
    found = dependents(task_id, await _dependency_graph(store))
    if found:
        raise Conflict(
            f"task {task_id!r} cannot be deleted: {', '.join(found)} depend"
            f"{'s' if len(found) == 1 else ''} on it (change their depends_on first)"
        )


# Deletes asked at once (an apply's prune) share one read of every task: a delete that comes
# while a read is under way waits for it instead of starting its own.
_reading: weakref.WeakKeyDictionary[StoreClient, asyncio.Future[dict[str, list[str]]]] = (
    weakref.WeakKeyDictionary()
)


async def _dependency_graph(store: StoreClient) -> dict[str, list[str]]:
    """Every stored task that has dependencies, with them (read a page at a time)."""
    reading = _reading.get(store)
    if reading is None or reading.done():
        reading = asyncio.ensure_future(_read_graph(store))
        _reading[store] = reading
    return await asyncio.shield(reading)


async def _read_graph(store: StoreClient) -> dict[str, list[str]]:
    graph: dict[str, list[str]] = {}
    after: str | None = None
    while True:
        page = await store.list_tasks(after=after, limit=TASK_PAGE)
        for record in page.items:
            if record.run_policy:
                graph[record.task_id] = stored_depends_on(record)
        after = page.next_cursor
        if after is None:
            return graph
