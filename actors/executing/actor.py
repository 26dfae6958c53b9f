"""ExecutorActor: runs one category's dispatched tasks, within limits, and settles each run.

For every dispatch of ``scheduler.task.dispatch.<category>``:

1. an execution the store already shows finished is acknowledged without running (a re-dispatch
   after a scheduler takeover, or a redelivery after the result was stored);
2. a dispatch redelivered more than ``poison_after`` times (its runs keep killing executors) is
   quarantined: the task is disabled, the fire dead-lettered with the reason, and it is not run;
3. the start waits, deferred and never dropped, while the category or the global limit is full,
   the same task is still running (unless it allows overlap), the machine is above the resource
   thresholds, the event loop lags, or (idle-only tasks) the machine is not idle;
4. the task runs under its timeout, then its outcome is written to the store, then the result is
   queued for the scheduler, and only then is the dispatch acknowledged: at least once.

Every step is published on ``scheduler.task.status``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack

from actors.actor import Actor
from actors.executing.batching import StoreBatch
from actors.executing.lag import LagMonitor
from actors.executing.resources import ResourceProbe, SystemProbe, idle, overloaded
from actors.scheduling.protocol import (
    DISPATCH_PREFIX,
    RESULT_QUEUE,
    STATUS_TOPIC,
    Dispatch,
    RunResult,
    owner_topic,
    report_dropped,
)
from actors.store.errors import InvalidValue
from bus import Consumer, Delivery, RemoteError
from bus.envelope import Payload
from config.errors import TaskbusError
from config.sections import CategorySettings, ResourceSettings, SchedulerSettings
from scheduler import Clock, SystemClock, error_names
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.errors import TaskCancelled
from tasks.registry import TaskRegistry
from tasks.result import TaskResult

STORE_TIMEOUT_S = 30.0
HANDBACK_PAUSE_S = 1.0
STORE_BATCH = 500  # executions per batched store request
POISON_AFTER = 3


class _Services:
    """What a task may do on the bus: ask and publish, as the executor's identity."""

    def __init__(self, actor: Actor) -> None:
        self._actor = actor

    async def ask(
        self, topic: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        reply = await self._actor.ask(topic, payload, timeout)
        return dict(reply.payload)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        await self._actor.publish(topic, payload)


class ExecutorActor(Actor):
    name = "executor"

    def __init__(
        self,
        category: CategorySettings,
        registry: TaskRegistry,
        *,
        scheduler: SchedulerSettings | None = None,
        resources: ResourceSettings | None = None,
        probe: ResourceProbe | None = None,
        global_slots: asyncio.Semaphore | None = None,
        clock: Clock | None = None,
        data_dir: Path | None = None,
        process_pool: ProcessPoolExecutor | None = None,
        poison_after: int = POISON_AFTER,
    ) -> None:
        super().__init__()
        self.category = category
        self.registry = registry
        self.scheduler = scheduler or SchedulerSettings()
        self.resources = resources or ResourceSettings()
        self.probe = probe or SystemProbe()
        self.log = logging.getLogger(f"taskbus.executor.{category.name}")
        limit = min(category.concurrency, self.scheduler.max_concurrent_tasks)
        self._slots = asyncio.Semaphore(limit)
        self._global = global_slots or asyncio.Semaphore(self.scheduler.max_concurrent_tasks)
        self._clock = clock or SystemClock()
        self._data_dir = data_dir
        self._threads = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="taskbus-task")
        self._processes = process_pool
        self._poison_after = poison_after
        self.lag = LagMonitor()
        self.running: dict[str, int] = {}  # task id -> runs in progress here
        self._changed = asyncio.Event()  # a run ended: deferred starts look again
        self._runs: set[asyncio.Task[None]] = set()
        self.quarantined: set[str] = set()  # task ids this executor quarantined
        self.counters: Counter[str] = Counter()
        # What the runs ask the store in one turn of the loop goes as one request.
        self._outcomes: StoreBatch[str, bool | None] = StoreBatch(
            self._ask_outcomes, limit=STORE_BATCH, name="store.execution.outcomes"
        )
        self._finishes: StoreBatch[dict[str, Any], None] = StoreBatch(
            self._finish_all,
            limit=STORE_BATCH,
            size=_finish_size,
            name="store.execution.finish_many",
        )

    def degraded(self) -> list[str]:
        reasons = [f"quarantined: {task_id}" for task_id in sorted(self.quarantined)]
        if self.lag.lagging:
            reasons.insert(0, f"event loop lags {self.lag.lag_s * 1000:.0f} ms: starts held")
        return reasons

    @property
    def queue(self) -> str:
        return DISPATCH_PREFIX + self.category.name

    async def on_start(self) -> None:
        self.lag.start()

    async def run(self) -> None:
        consumer: Consumer = await self.bus.consume(
            self.queue, credit=min(self.category.concurrency, self.scheduler.max_concurrent_tasks)
        )
        while True:
            delivery = await consumer.get()
            task = asyncio.create_task(self._handle(delivery))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    async def on_stop(self) -> None:
        for task in list(self._runs):
            task.cancel()  # unacknowledged: the broker redelivers
        await asyncio.gather(*self._runs, return_exceptions=True)
        await self._outcomes.close()
        await self._finishes.close()
        await self.lag.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ one dispatch

    async def _handle(self, delivery: Delivery) -> None:
        """One dispatch, settled whatever happens: a failure of the bus or the store while
        handling it (not of the task: that is a result) hands it back to the queue after
        HANDBACK_PAUSE_S, instead of holding its credit until this executor restarts."""
        try:
            await self._handle_dispatch(delivery)
        except Exception as exc:
            self.counters["handed_back"] += 1
            self.log.error(
                "dispatch %s not handled, handed back to the queue: %s: %s",
                delivery.envelope.id.hex(),
                type(exc).__name__,
                exc,
            )
            await asyncio.sleep(HANDBACK_PAUSE_S)
            delivery.nack(requeue=True)

    async def _handle_dispatch(self, delivery: Delivery) -> None:
        try:
            dispatch = Dispatch.read(delivery.envelope.payload)
        except InvalidValue as exc:
            await report_dropped(self, self.queue, delivery, exc)
            delivery.nack(requeue=False)
            return
        try:
            finished = await self._outcomes.submit(dispatch.execution_id)
        except RemoteError as exc:
            if exc.code != "not_found":
                raise
            # Never recorded by a scheduler (every fire is recorded before its dispatch), or
            # deleted by retention since: nothing could store its outcome. Dropped, and said.
            self.counters["unknown_execution"] += 1
            await report_dropped(self, self.queue, delivery, exc)
            delivery.ack()
            return
        if finished is not None:
            self.counters["already_finished"] += 1
            delivery.ack()
            return
        if delivery.attempt > self._poison_after:
            await self._quarantine(dispatch, delivery.attempt)
            delivery.ack()
            return
        await self._status(dispatch, "queued")
        try:
            task_class = self.registry.resolve(dispatch.task_id, dispatch.task_class)
        except TaskbusError as exc:
            await self._settle(dispatch, _failure(exc), started=_now())
            delivery.ack()
            return
        await self._admit(dispatch, task_class)
        try:
            started = _now()
            result = await self._execute(dispatch, task_class)
        finally:
            self._release(dispatch)
        await self._settle(dispatch, result, started=started)
        delivery.ack()

    async def _admit(self, dispatch: Dispatch, task_class: type[BaseTask]) -> None:
        """Wait until this run may start; every reason to wait is published once."""
        announced = ""
        while True:
            reason = self._wait_reason(dispatch, task_class)
            if reason is None and not self._slots.locked() and not self._global.locked():
                await self._slots.acquire()
                await self._global.acquire()
                self.running[dispatch.task_id] = self.running.get(dispatch.task_id, 0) + 1
                return
            reason = reason or "concurrency limit reached"
            if reason != announced:
                announced = reason
                self.counters["deferred"] += 1
                await self._status(dispatch, "deferred", reason=reason)
            self._changed.clear()
            # A run ending wakes this at once; load, lag and idleness are looked at again
            # every second (at most check_interval_s), as nothing announces their change.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._changed.wait(), min(1.0, self.resources.check_interval_s)
                )

    def _wait_reason(self, dispatch: Dispatch, task_class: type[BaseTask]) -> str | None:
        if not dispatch.allow_overlap and self.running.get(dispatch.task_id):
            return "the previous run of this task is still running"
        if self.lag.lagging:
            return f"event loop lags {self.lag.lag_s * 1000:.0f} ms"
        load = self.probe.load()
        busy = overloaded(load, self.resources)
        if busy is not None:
            return busy
        if task_class.idle_only and not idle(load, self.resources):
            return "waiting for the system to be idle"
        return None

    def _release(self, dispatch: Dispatch) -> None:
        self.running[dispatch.task_id] -= 1
        if not self.running[dispatch.task_id]:
            del self.running[dispatch.task_id]
        self._slots.release()
        self._global.release()
        self._changed.set()

    async def _execute(self, dispatch: Dispatch, task_class: type[BaseTask]) -> TaskResult:
        cancelled = asyncio.Event()
        try:
            options = task_class.read_options(dispatch.config, task_id=dispatch.task_id)
        except TaskbusError as exc:
            return _failure(exc)
        context = TaskContext(
            task_id=dispatch.task_id,
            execution_id=dispatch.execution_id,
            scheduled_at=dispatch.scheduled_at,
            attempt=dispatch.attempt,
            options=options,
            clock=self._clock,
            cancelled=cancelled,
            services=_Services(self),
            on_progress=lambda fraction, note: self._status(
                dispatch, "progress", fraction=fraction, note=note
            ),
            idle_probe=lambda: idle(self.probe.load(), self.resources),
            threads=self._threads,
            processes=self._processes,
            data_dir=self._data_dir,
            loop_lag_s=lambda: self.lag.lag_s,
        )
        await self._status(dispatch, "started")
        self.counters["started"] += 1
        try:
            return await asyncio.wait_for(task_class().execute(context), dispatch.timeout_s)
        except TimeoutError:
            cancelled.set()
            self.counters["timed_out"] += 1
            return TaskResult.fail(
                f"timed out after {dispatch.timeout_s:g}s",
                timed_out=True,
                error_type=list(error_names(TimeoutError())),
            )
        except TaskCancelled as exc:
            return _failure(exc)
        except Exception as exc:  # the task's own failure: recorded, never fatal here
            self.log.warning("task %s failed: %s: %s", dispatch.task_id, type(exc).__name__, exc)
            return _failure(exc)

    async def _settle(self, dispatch: Dispatch, result: TaskResult, *, started: datetime) -> None:
        """Store the outcome, queue the result, publish the status (in this order)."""
        completed = _now()
        names = _error_types(result)
        data = dict(result.data)
        if names:
            data["error_type"] = list(names)
        if result.skipped:
            data["skipped"] = True
        await self._finishes.submit(
            {
                "execution_id": dispatch.execution_id,
                "completed_at": completed.isoformat(),
                "success": result.success,
                "result": data,
                "error_message": result.error,
                "duration_seconds": max(0.0, (completed - started).total_seconds()),
            }
        )
        await self.bus.enqueue(
            RESULT_QUEUE,
            RunResult(
                execution_id=dispatch.execution_id,
                task_id=dispatch.task_id,
                scheduled_at=dispatch.scheduled_at,
                attempt=dispatch.attempt,
                success=result.success,
                completed_at=completed,
                error_type=names,
                error_message=result.error or "",
            ).payload(),
            STORE_TIMEOUT_S,
        )
        state = "skipped" if result.skipped else "succeeded" if result.success else "failed"
        if result.data.get("timed_out"):
            state = "timed_out"
        self.counters[state] += 1
        await self._status(dispatch, state, error=result.error)

    async def _quarantine(self, dispatch: Dispatch, attempt: int) -> None:
        """Disable the task first (no new fires), then dead-letter the fire and finish it."""
        reason = (
            f"poison: delivered {attempt} times, each run ended its executor "
            f"(limit {self._poison_after}); task disabled"
        )
        self.log.error("task %s quarantined: %s", dispatch.task_id, reason)
        self.counters["quarantined"] += 1
        self.quarantined.add(dispatch.task_id)
        try:
            await self._ask("scheduler.task.disable", {"task_id": dispatch.task_id})
        except RemoteError as exc:  # no scheduler right now: the dead letter says it all
            self.log.warning("cannot disable %s: %s", dispatch.task_id, exc)
        now = _now()
        await self._ask(
            "store.dead_letter.add",
            {
                "task_id": dispatch.task_id,
                "scheduled_at": dispatch.scheduled_at.isoformat(),
                "attempts": attempt,
                "error_type": "Poison",
                "last_error": reason,
                "reason": reason,
                "failed_at": now.isoformat(),
            },
        )
        await self._ask(
            "store.execution.finish",
            {
                "execution_id": dispatch.execution_id,
                "completed_at": now.isoformat(),
                "success": False,
                "result": {"error_type": ["Poison"], "quarantined": True},
                "error_message": reason,
            },
        )
        await self._status(dispatch, "quarantined", reason=reason)

    # ------------------------------------------------------------ helpers

    async def _ask_outcomes(self, execution_ids: list[str]) -> list[bool | BaseException | None]:
        """Whether each execution finished (True/False: its success) or not (None)."""
        reply = await self._ask("store.execution.outcomes", {"execution_ids": execution_ids})
        outcomes = reply["outcomes"]
        return [
            outcomes[i] if i in outcomes else RemoteError("not_found", f"execution {i!r} not found")
            for i in execution_ids
        ]

    async def _finish_all(self, finishes: list[dict[str, Any]]) -> list[BaseException | None]:
        """Store the outcomes, committed together; a refused one fails alone."""
        reply = await self._ask("store.execution.finish_many", {"executions": finishes})
        return [
            None
            if answer.get("error") is None
            else RemoteError(str(answer["error"]["code"]), str(answer["error"]["reason"]))
            for answer in reply["executions"]
        ]

    async def _ask(self, topic: str, payload: Payload) -> dict[str, Any]:
        reply = await self.ask(topic, payload, STORE_TIMEOUT_S)
        return dict(reply.payload)

    async def _status(self, dispatch: Dispatch, state: str, **fields: Any) -> None:
        await self.publish(
            owner_topic(STATUS_TOPIC, dispatch.owner),
            {
                "task_id": dispatch.task_id,
                "execution_id": dispatch.execution_id,
                "scheduled_at": dispatch.scheduled_at.isoformat(),
                "attempt": dispatch.attempt,
                "state": state,
                "executor": self.category.name,
                **fields,
            },
        )


def _finish_size(finish: dict[str, Any]) -> int:
    """About how many bytes an outcome adds to a ``store.execution.finish_many`` request."""
    size = 256 + len(finish.get("error_message") or "")
    if finish["result"]:
        size += len(msgpack.packb(finish["result"], use_bin_type=True, default=str))
    return size


def _now() -> datetime:
    return datetime.now(UTC)


def _failure(error: BaseException) -> TaskResult:
    return TaskResult.fail(f"{type(error).__name__}: {error}", error_type=list(error_names(error)))


def _error_types(result: TaskResult) -> tuple[str, ...]:
    if result.success:
        return ()
    names = result.data.get("error_type")
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    return ("TaskFailed",)  # a TaskResult.fail() that named no error type
