"""Running one task: the context it is given, its timeout on the executor's clock, and whatever
it does (returns, raises, overruns, suspends, is cancelled) as an :class:`Attempt`. A task's
failure is a result here, never an error of the executor."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from actors.actor import Actor
from actors.executing.journal import StoreInbox, StoreJournal
from actors.executing.live import LiveRuns
from actors.executing.status import Announce
from actors.executing.stopping import CancelEvent, watched
from actors.scheduling.protocol import Dispatch
from actors.storing.client import StoreClient
from config import topics
from config.errors import TaskbusError
from scheduler import Clock, error_names
from store.records import run_key
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.errors import RunCancelled, Suspended, TaskCancelled
from tasks.queries import answer_queries, queries_of
from tasks.result import TaskResult

T = TypeVar("T")
Logged = tuple[tuple[datetime, str, str], ...]  # a run's ctx.log lines (tasks.context.RunLog)
SUSPEND_AFTER_S = 1.0  # a sleep or wait longer than this suspends the run instead of waiting


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """How one attempt ended, for its settlement: its result; ``suspension`` if it suspended
    (the run goes on in a later attempt, woken by the scheduler); ``cancelled`` if its run was
    cancelled (``scheduler.run.cancel``: its result a RunCancelled failure, never retried);
    ``durable`` if its run has (or may have) a row in the store's runs, which a success must
    close (``finish_run``). ``answers``: the run's answers to its class's queries as it ended
    (None: its class has none), stored with its suspension or its end."""

    result: TaskResult
    suspension: Suspended | None = None
    cancelled: bool = False
    durable: bool = False
    answers: dict[str, Any] | None = None

    @classmethod
    def of(cls, result: TaskResult) -> Attempt:
        return cls(result=result)


class BusSpawner:
    """How a run spawns its child runs (``tasks.context.Spawner``): it asks the scheduler
    (``scheduler.exec.spawn``, the executor's identity) for the child of ``parent_run``."""

    def __init__(self, actor: Actor, parent_run: str) -> None:
        self._actor = actor
        self.parent_run = parent_run

    async def spawn(
        self, *, key: str, task_class: str, config: dict[str, Any], on_parent_cancel: str
    ) -> dict[str, Any]:
        reply = await self._actor.ask(
            topics.EXEC_SPAWN,
            {
                "parent_run": self.parent_run,
                "key": key,
                "task_class": task_class,
                "config": dict(config),
                "on_parent_cancel": on_parent_cancel,
            },
        )
        return {"task_id": reply.payload["task_id"], "run": reply.payload["run"]}


class BusServices:
    """What a task may do on the bus (``tasks.services.TaskServices``): ask and publish, as the
    executor's identity; its runs' spawners (``spawner``)."""

    def __init__(self, actor: Actor) -> None:
        self._actor = actor

    def spawner(self, parent_run: str) -> BusSpawner:
        return BusSpawner(self._actor, parent_run)

    async def ask(
        self, topic: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        reply = await self._actor.ask(topic, payload, timeout)
        return dict(reply.payload)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        await self._actor.publish(topic, payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRunner:
    """Runs the tasks of one executor, with what its runs share: bus services, clock, pools
    and probes."""

    services: BusServices
    clock: Clock
    threads: ThreadPoolExecutor
    processes: ProcessPoolExecutor | None
    data_dir: Path | None
    idle: Callable[[], bool]
    loop_lag_s: Callable[[], float]
    log: logging.Logger
    counters: Counter[str]
    # Where runs keep their steps and read their signals (None: in memory, each run its own:
    # tests without a store).
    store: StoreClient | None = None
    # The runs in progress, for what the scheduler pushes them (None: nothing is pushed).
    live: LiveRuns | None = None
    suspend_after_s: float = SUSPEND_AFTER_S
    # What each run logged, by execution id, until its settlement takes it (``take_logs``).
    logs: dict[str, Logged] = field(default_factory=dict)

    def take_logs(self, execution_id: str) -> Logged:
        return self.logs.pop(execution_id, ())

    async def run(
        self, dispatch: Dispatch, task_class: type[BaseTask], announce: Announce
    ) -> Attempt:
        """How the run's attempt ended: what the task returned, or its failure, timeout,
        cancellation or suspension; what it logged is kept for its settlement (``take_logs``)."""
        cancelled = CancelEvent()
        key = run_key(dispatch.task_id, dispatch.scheduled_at)
        try:
            options = task_class.read_options(dispatch.config, task_id=dispatch.task_id)
        except TaskbusError as exc:
            return Attempt.of(failure(exc))
        inbox = None if self.store is None else StoreInbox(self.store, key)
        context = TaskContext(
            task_id=dispatch.task_id,
            execution_id=dispatch.execution_id,
            scheduled_at=dispatch.scheduled_at,
            attempt=dispatch.attempt,
            options=options,
            clock=self.clock,
            cancelled=cancelled,
            services=self.services,
            on_progress=lambda fraction, note: announce("progress", fraction=fraction, note=note),
            idle_probe=self.idle,
            threads=self.threads,
            processes=self.processes,
            data_dir=self.data_dir,
            loop_lag_s=self.loop_lag_s,
            steps=None if self.store is None else StoreJournal(self.store, key),
            signals=inbox,
            suspend_after_s=self.suspend_after_s,
            spawner=self.services.spawner(key),
        )
        task = task_class()
        refused = None if self.live is None else self.live.refused(key)
        if refused is not None:  # cancelled before it started here
            return Attempt(result=failure(RunCancelled(refused)), cancelled=True, durable=True)
        live = None if self.live is None else self.live.enter(key, context, task)
        try:
            attempt = await self._execute(dispatch, task, context, cancelled, announce)
        finally:
            if live is not None and self.live is not None:
                await self.live.leave(live)
            self.logs[dispatch.execution_id] = context.log.lines()
        durable = (  # the run has a row in the store's runs (or may have)
            attempt.durable
            or dispatch.wakes > 0
            or context.durable_used
            or (live is not None and live.pushed)
            or bool(inbox is not None and inbox.loaded)
        )
        answers = answer_queries(task, context) if queries_of(task_class) else None
        return replace(attempt, durable=durable, answers=answers)

    async def _execute(
        self,
        dispatch: Dispatch,
        task: BaseTask,
        context: TaskContext[Any],
        cancelled: CancelEvent,
        announce: Announce,
    ) -> Attempt:
        """``cancelled``: the context's event (set by a cancel of the run, or here on timeout)."""
        await announce("started")
        self.counters["started"] += 1

        async def body() -> TaskResult:
            await context.handle_signals(task)  # what came before the run began
            return await task.execute(context)

        try:
            result = await watched(self.clock, context, cancelled, body(), dispatch.timeout_s)
            if result.success:
                context.check_steps()  # StepsChanged: the code no longer asks for a kept step
            return Attempt.of(result)
        except Suspended as suspension:
            if context.run_cancelled:  # cancelled as it suspended
                return _cancelled(RunCancelled(context.cancel_reason))
            return Attempt(
                result=TaskResult.ok(suspended=_suspended(suspension)),
                suspension=suspension,
                durable=True,
            )
        except TimeoutError:
            cancelled.set()
            self.counters["timed_out"] += 1
            return Attempt.of(
                TaskResult.fail(
                    f"timed out after {dispatch.timeout_s:g}s",
                    timed_out=True,
                    error_type=list(error_names(TimeoutError())),
                )
            )
        except RunCancelled as exc:
            return _cancelled(exc)
        except TaskCancelled as exc:
            return Attempt.of(failure(exc))
        except Exception as exc:  # the task's own failure: recorded, never fatal here
            if context.run_cancelled:  # how its code took the cancel of its run
                return _cancelled(RunCancelled(context.cancel_reason))
            self.log.warning("task %s failed: %s: %s", dispatch.task_id, type(exc).__name__, exc)
            return Attempt.of(failure(exc))


def _cancelled(error: RunCancelled) -> Attempt:
    return Attempt(result=failure(error), cancelled=True, durable=True)


def _suspended(suspension: Suspended) -> dict[str, Any]:
    """How a suspended attempt's outcome says where its run stopped."""
    return {
        "wake_at": None if suspension.wake_at is None else suspension.wake_at.isoformat(),
        "waiting": suspension.waiting,
        "paused": suspension.paused,
    }


def failure(error: BaseException) -> TaskResult:
    """A failed result naming ``error`` and its class hierarchy (for the retry policy)."""
    return TaskResult.fail(f"{type(error).__name__}: {error}", error_type=list(error_names(error)))
