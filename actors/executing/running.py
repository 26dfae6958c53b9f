"""Running one task: the context it is given, its timeout on the executor's clock, and whatever
it does (returns, raises, overruns) as a :class:`TaskResult`. A task's failure is a result here,
never an error of the executor."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from actors.actor import Actor
from actors.executing.journal import StoreJournal
from actors.executing.status import Announce
from actors.scheduling.protocol import Dispatch
from actors.storing.client import StoreClient
from config.errors import TaskbusError
from scheduler import Clock, error_names, within
from store.records import run_key
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.errors import TaskCancelled
from tasks.result import TaskResult

T = TypeVar("T")
Logged = tuple[tuple[datetime, str, str], ...]  # a run's ctx.log lines (tasks.context.RunLog)


class BusServices:
    """What a task may do on the bus (``tasks.services.TaskServices``): ask and publish, as the
    executor's identity."""

    def __init__(self, actor: Actor) -> None:
        self._actor = actor

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
    # Where runs keep their steps (None: in memory, each run its own: tests without a store).
    store: StoreClient | None = None
    # What each run logged, by execution id, until its settlement takes it (``take_logs``).
    logs: dict[str, Logged] = field(default_factory=dict)

    def take_logs(self, execution_id: str) -> Logged:
        return self.logs.pop(execution_id, ())

    async def run(
        self, dispatch: Dispatch, task_class: type[BaseTask], announce: Announce
    ) -> TaskResult:
        """The run's result: what the task returned, or its failure, timeout or cancellation;
        what it logged is kept for its settlement (``take_logs``)."""
        cancelled = asyncio.Event()
        try:
            options = task_class.read_options(dispatch.config, task_id=dispatch.task_id)
        except TaskbusError as exc:
            return failure(exc)
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
            steps=(
                None
                if self.store is None
                else StoreJournal(self.store, run_key(dispatch.task_id, dispatch.scheduled_at))
            ),
        )
        try:
            return await self._execute(dispatch, task_class, context, announce)
        finally:
            self.logs[dispatch.execution_id] = context.log.lines()

    async def _execute(
        self,
        dispatch: Dispatch,
        task_class: type[BaseTask],
        context: TaskContext[Any],
        announce: Announce,
    ) -> TaskResult:
        cancelled = context.cancelled
        await announce("started")
        self.counters["started"] += 1
        try:
            result = await within(self.clock, dispatch.timeout_s, task_class().execute(context))
            if result.success:
                context.check_steps()  # StepsChanged: the code no longer asks for a kept step
            return result
        except TimeoutError:
            cancelled.set()
            self.counters["timed_out"] += 1
            return TaskResult.fail(
                f"timed out after {dispatch.timeout_s:g}s",
                timed_out=True,
                error_type=list(error_names(TimeoutError())),
            )
        except TaskCancelled as exc:
            return failure(exc)
        except Exception as exc:  # the task's own failure: recorded, never fatal here
            self.log.warning("task %s failed: %s: %s", dispatch.task_id, type(exc).__name__, exc)
            return failure(exc)


def failure(error: BaseException) -> TaskResult:
    """A failed result naming ``error`` and its class hierarchy (for the retry policy)."""
    return TaskResult.fail(f"{type(error).__name__}: {error}", error_type=list(error_names(error)))
