"""ExecutorActor: runs one category's dispatched tasks, within limits, and settles each run.

For every dispatch of ``scheduler.task.dispatch.<category>``:

1. an execution the store already shows finished is acknowledged without running (a re-dispatch
   after a scheduler takeover, or a redelivery after the result was stored);
2. a dispatch redelivered more than ``poison_after`` times (its runs keep killing executors) is
   quarantined (:mod:`.quarantine`) and not run;
3. the start waits, deferred and never dropped, until admitted (:mod:`.admission`): limits,
   overlap, machine load, event-loop lag, idleness;
4. the task runs under its timeout (:mod:`.running`), then it is settled (:mod:`.settling`): its
   outcome written to the store, then its result queued for the scheduler, and only then is the
   dispatch acknowledged: at least once.

A run may suspend (a durable sleep or wait, a pause: its attempt ends, its slot is given back,
the scheduler wakes it later in a new attempt) or be cancelled; the scheduler pushes the signals
and controls of runs on ``scheduler.run.deliver.<category>``, to the runs in progress here
(:mod:`.live`), and the queries of those runs, which are answered. A run spawns child runs
through the scheduler (``running.BusSpawner``, ``scheduler.exec.spawn``).

Every step is published on ``scheduler.task.status`` (:mod:`.status`). The store is reached
through :class:`StoreClient` only, its execution asks batched (:mod:`.ledger`); every timestamp,
pause and timeout is taken from the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from actors.actor import Actor, Route, on_event, on_work
from actors.executing.admission import Admission, Deferred
from actors.executing.lag import LagMonitor
from actors.executing.ledger import Ledger
from actors.executing.live import LiveRuns
from actors.executing.quarantine import POISON_AFTER, Quarantine
from actors.executing.resources import ResourceProbe, SystemProbe
from actors.executing.running import SUSPEND_AFTER_S, Attempt, BusServices, TaskRunner, failure
from actors.executing.settling import Settlement
from actors.executing.status import Announce, StatusEvents
from actors.scheduling.protocol import Dispatch, RunPush, report_dropped
from actors.storing.client import StoreClient
from bus import Delivery, Envelope
from config import topics
from config.errors import TaskbusError
from config.sections import CategorySettings, ResourceSettings, SchedulerSettings
from scheduler import Clock, SystemClock, sleep
from store.errors import InvalidValue, NotFound
from tasks.registry import TaskRegistry

STORE_TIMEOUT_S = 30.0
HANDBACK_PAUSE_S = 1.0


class ExecutorActor(Actor):
    name = "executor"
    watches = (topics.STATUS_EVENTS + ".",)  # status events nobody listens to are not sent

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
        suspend_after_s: float = SUSPEND_AFTER_S,
    ) -> None:
        """``suspend_after_s``: a run's sleep or wait longer than this suspends it (its attempt
        ends, the scheduler wakes it later) instead of holding its slot meanwhile."""
        super().__init__()
        self.category = category
        self.registry = registry
        self.scheduler = scheduler or SchedulerSettings()
        self.resources = resources or ResourceSettings()
        self.probe = probe or SystemProbe()
        self.log = logging.getLogger(f"taskbus.executor.{category.name}")
        self.credit = min(category.concurrency, self.scheduler.max_concurrent_tasks)
        self._clock = clock or SystemClock()
        self._threads = ThreadPoolExecutor(
            max_workers=self.credit, thread_name_prefix="taskbus-task"
        )
        self.lag = LagMonitor()  # real time on purpose: it measures the real event loop
        self.counters: Counter[str] = Counter()
        self._store = StoreClient(self.ask, timeout_s=STORE_TIMEOUT_S)
        self._ledger = Ledger(self._store, self._clock)
        self._admission = Admission(
            limit=self.credit,
            global_slots=global_slots or asyncio.Semaphore(self.scheduler.max_concurrent_tasks),
            probe=self.probe,
            resources=self.resources,
            lag=self.lag,
            clock=self._clock,
        )
        self._status = StatusEvents(self.publish, category.name)
        self.live = LiveRuns(self.log, self.counters)
        self._runner = TaskRunner(
            services=BusServices(self),
            clock=self._clock,
            threads=self._threads,
            processes=process_pool,
            data_dir=data_dir,
            idle=self._admission.idle,
            loop_lag_s=lambda: self.lag.lag_s,
            log=self.log,
            counters=self.counters,
            store=self._store,
            live=self.live,
            suspend_after_s=suspend_after_s,
        )
        self._settlement = Settlement(
            self,
            self._ledger,
            self._status,
            clock=self._clock,
            counters=self.counters,
            logs=self._runner.take_logs,
        )
        self._quarantine = Quarantine(
            self,
            self._store,
            self._status,
            clock=self._clock,
            counters=self.counters,
            log=self.log,
            poison_after=poison_after,
        )

    @property
    def queue(self) -> str:
        return topics.DISPATCH_QUEUES + self.category.name

    @property
    def pushes(self) -> str:
        """Where the scheduler pushes the signals and controls of this category's runs."""
        return topics.RUN_DELIVER + self.category.name

    @property
    def running(self) -> dict[str, int]:
        """Task id -> its runs in progress here."""
        return self._admission.running

    def degraded(self) -> list[str]:
        reasons = [f"quarantined: {task_id}" for task_id in sorted(self._quarantine.tasks)]
        if self.lag.lagging:
            reasons.insert(0, f"event loop lags {self.lag.lag_s * 1000:.0f} ms: starts held")
        return reasons

    def metrics(self) -> dict[str, float]:
        return {
            "runs_in_progress": float(sum(self.running.values())),
            "event_loop_lag_seconds": self.lag.lag_s,
        }

    async def on_start(self) -> None:
        self.lag.start()

    def work_route(self, route: Route) -> Route:
        """The category's queue, and as much credit as runs may start at once."""
        return replace(route, pattern=self.queue, credit=self.credit)

    async def run(self) -> None:
        """Announce this category's task classes once subscribed: a leader up already learns
        them now, one that takes over later asks (``announce``)."""
        await self.announce()

    @on_event(topics.CATALOGUE_WANTED)
    async def announce(self, _: Envelope | None = None) -> None:
        """Publish the category's classes and their options (docs/protocol.md, catalogue)."""
        classes = self.registry.catalogue(self.category.name)
        payload = {"category": self.category.name, "classes": classes}
        await self.publish(topics.CATALOGUE_EVENTS + self.category.name, payload)

    @on_event(topics.RUN_DELIVER)  # every category's: those of the others are ignored
    async def on_push(self, event: Envelope) -> None:
        """A signal, cancel, pause or resume of a run, for its attempt in progress here; a
        cancel of a run not in progress is remembered for its start."""
        if event.topic != self.pushes:
            return
        try:
            push = RunPush.read(event.payload)
        except InvalidValue as exc:
            self.counters["pushes_dropped"] += 1
            self.log.error("dropped a push on %s from %s: %s", event.topic, event.sender, exc)
            return
        if push.kind == "query":
            await self._answer(push)
            return
        if push.kind == "update":
            self.live.update(push, self._store, self._clock, self._replier(push))
            return
        self.live.push(push)

    def _replier(self, push: RunPush) -> Callable[[Any, str | None], Awaitable[None]]:
        """How an update's outcome is answered (``scheduler.exec.answer``)."""

        async def reply(answer: Any, error: str | None) -> None:
            payload: dict[str, Any] = {"query_id": push.query_id}
            if error is None:
                payload["answer"] = answer
            else:
                payload["error"] = error
            try:
                await self.ask(topics.EXEC_ANSWER, payload)
            except Exception as exc:  # the asker takes the run as not live
                self.log.warning(
                    "update %s of run %s not answered: %s", push.name, push.run_key, exc
                )

        return reply

    async def _answer(self, push: RunPush) -> None:
        """Answer a query of a run in progress here (``scheduler.exec.answer``)."""
        answered = self.live.answer(push)
        if answered is None:
            return
        answer, error = answered
        payload: dict[str, Any] = {"query_id": push.query_id}
        if error is None:
            payload["answer"] = answer
        else:
            payload["error"] = error
        try:
            await self.ask(topics.EXEC_ANSWER, payload)
        except Exception as exc:  # the asker gets the stored answer instead
            self.log.warning("query %s of run %s not answered: %s", push.name, push.run_key, exc)

    async def on_stop(self) -> None:
        await self._ledger.close()
        await self.lag.stop()
        self._threads.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------ one dispatch

    @on_work(topics.DISPATCH_QUEUES, family=True, lasting=True)  # the queue: work_route
    async def on_dispatch(self, delivery: Delivery) -> None:
        """One dispatch, settled whatever happens: a failure of the bus or the store while
        handling it (not of the task: that is a result) hands it back to the queue after
        HANDBACK_PAUSE_S, instead of holding its credit until this executor restarts."""
        try:
            await self._handle(delivery)
        except Exception as exc:
            self.counters["handed_back"] += 1
            self.log.error(
                "dispatch %s not handled, handed back to the queue: %s: %s",
                delivery.envelope.id.hex(),
                type(exc).__name__,
                exc,
            )
            await sleep(self._clock, HANDBACK_PAUSE_S)
            delivery.nack(requeue=True)

    async def _handle(self, delivery: Delivery) -> None:
        try:
            dispatch = Dispatch.read(delivery.envelope.payload)
        except InvalidValue as exc:
            await report_dropped(self, self.queue, delivery, exc)
            delivery.nack(requeue=False)
            return
        try:
            finished = await self._ledger.outcome(dispatch.execution_id)
        except NotFound as exc:
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
        if self._quarantine.is_poison(delivery.attempt):
            await self._quarantine.quarantine(dispatch, delivery.attempt)
            delivery.ack()
            return
        announce = self._status.of(dispatch)
        try:
            task_class = self.registry.resolve(dispatch.task_id, dispatch.task_class)
        except TaskbusError as exc:
            await self._settlement.settle(
                dispatch, Attempt.of(failure(exc)), started=self._clock.wall()
            )
            delivery.ack()
            return
        await self._admission.admit(dispatch, task_class, self._deferred(announce))
        try:
            started = self._clock.wall()
            attempt = await self._runner.run(dispatch, task_class, announce)
        finally:
            self._admission.release(dispatch)
        await self._settlement.settle(dispatch, attempt, started=started)
        delivery.ack()

    def _deferred(self, announce: Announce) -> Deferred:
        async def deferred(reason: str) -> None:
            self.counters["deferred"] += 1
            await announce("deferred", reason=reason)

        return deferred
