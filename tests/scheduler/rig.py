"""The scheduler actor on a real embedded system: broker, encrypted store actor, scheduler, a
tester client and a test executor that runs dispatches the way executors must (finish in the
store, queue the result, then acknowledge). Not collected."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest

from actors import ActorSystem
from actors.scheduling import RESULT_QUEUE, Dispatch, RunResult, SchedulerActor
from bus import BusClient, Consumer, Delivery, Envelope, Subscription
from scheduler import FakeClock, error_names
from tests.asking import Asking

Scheduling = Callable[..., Awaitable[SchedulerActor]]
Outcome = Callable[[Dispatch], BaseException | None]  # None: the run succeeds


def succeed(dispatch: Dispatch) -> BaseException | None:
    return None


@dataclass
class RecordingExecutor:
    """Consumes one category's dispatch queue; ``outcome`` decides how each attempt ends."""

    client: BusClient
    queue: str
    outcome: Outcome = succeed
    runs: list[Dispatch] = field(default_factory=list)
    ran: asyncio.Event = field(default_factory=asyncio.Event)
    _consumer: Consumer | None = None
    _task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._consumer = await self.client.consume(self.queue, credit=10)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        assert self._consumer is not None
        while True:
            delivery = await self._consumer.get()
            await self._run(delivery)

    async def _run(self, delivery: Delivery) -> None:
        dispatch = Dispatch.read(delivery.envelope.payload)
        error = self.outcome(dispatch)
        now = datetime.now(UTC)
        names = error_names(error) if error is not None else ()
        await self.client.ask(
            "store.execution.finish",
            {
                "execution_id": dispatch.execution_id,
                "completed_at": now.isoformat(),
                "success": error is None,
                "result": {"error_type": list(names)} if names else {"ok": True},
                "error_message": None if error is None else str(error),
                "retry_count": dispatch.attempt - 1,
            },
            timeout=10,
        )
        result = RunResult(
            execution_id=dispatch.execution_id,
            task_id=dispatch.task_id,
            scheduled_at=dispatch.scheduled_at,
            attempt=dispatch.attempt,
            success=error is None,
            completed_at=now,
            error_type=names,
            error_message="" if error is None else str(error),
        )
        await self.client.enqueue(RESULT_QUEUE, result.payload(), 10)
        delivery.ack()
        self.runs.append(dispatch)
        self.ran.set()

    async def until(self, count: int, timeout: float = 10.0) -> list[Dispatch]:
        """The first ``count`` runs, waiting for them."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.runs) < count:
            self.ran.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{len(self.runs)} runs within {timeout}s, not {count}")
            try:
                await asyncio.wait_for(self.ran.wait(), remaining)
            except TimeoutError:
                continue
        return self.runs[:count]


@dataclass
class Caller(Asking):
    """A bus client asking the scheduler, with the events it published."""

    client: BusClient
    events: Subscription

    async def event(
        self, topic: str, predicate: Callable[[Envelope], bool] = lambda e: True
    ) -> Envelope:
        """The next event on ``topic`` or a topic under it (a task's events are on its
        owner's: ``scheduler.task.status.<owner>``) for which ``predicate`` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            envelope = await self.events.get(timeout=max(0.01, deadline - loop.time()))
            under = envelope.topic == topic or envelope.topic.startswith(f"{topic}.")
            if under and predicate(envelope):
                return envelope


Stop = Callable[[ActorSystem, str], Awaitable[None]]


@dataclass
class Rig:
    """The embedded system with a scheduler on a fake clock: the schedules' time passes only
    when the test advances ``clock``."""

    start_scheduler: Scheduling
    caller: Caller
    executor: RecordingExecutor
    system: ActorSystem
    clock: FakeClock

    async def leads(self, name: str) -> SchedulerActor:
        """A scheduler on the fake clock, once it leads."""
        return await self.start_scheduler(name=name, clock=self.clock)


async def stop_cleanly(system: ActorSystem, name: str) -> None:
    """The scheduler stops and hands its lease over."""
    supervised = system._actors[name]
    assert supervised.cell is not None
    await supervised.cell.stop(1.0)


async def kill(system: ActorSystem, name: str) -> None:
    """The scheduler vanishes mid-flight: no stop hook, the lease stays until it expires."""
    supervised = system._actors[name]
    assert supervised.cell is not None
    await supervised.cell.close()


STOPS = [pytest.param(stop_cleanly, id="clean stop"), pytest.param(kill, id="killed")]
