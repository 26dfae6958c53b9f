"""The scheduler actor on a real embedded system: broker, encrypted store actor, scheduler, a
tester client and a test executor that runs dispatches the way executors must (finish in the
store, queue the result, then acknowledge). Not collected."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from actors import ActorState, ActorSystem
from actors.scheduling import RESULT_QUEUE, Dispatch, RunResult, SchedulerActor
from actors.scheduling.owners import Owners
from bus import BusClient, Consumer, Delivery, Envelope, Subscription
from bus.acl import Roles
from config.sections import SchedulerSettings
from scheduler import Clock, FakeClock, SystemClock, error_names
from tests.asking import Asking
from tests.bus.waits import eventually
from tests.conftest import TEST_ROLES

Outcome = Callable[[Dispatch], BaseException | None]  # None: the run succeeds


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class StoreClock:
    """The store actor's clock: the host's, until a rig hands it the schedulers' fake clock, so
    that the store judges lease expiry by the same time the schedulers keep their leases by."""

    read: Callable[[], datetime] = utc_now

    def __call__(self) -> datetime:
        return self.read()


@dataclass
class Scheduling:
    """``await start_scheduler(name=...)``: a scheduler, its first instance returned once it
    leads (``lead=False``: as soon as it started, on standby or leading). Every instance made is
    kept (``made``), restarts included."""

    system: ActorSystem
    settings: SchedulerSettings
    made: list[SchedulerActor] = field(default_factory=list)

    async def __call__(
        self, name: str = "scheduler", *, lead: bool = True, **options: Any
    ) -> SchedulerActor:
        instances: list[SchedulerActor] = []

        def factory() -> SchedulerActor:
            options.setdefault("owners", Owners(Roles(TEST_ROLES)))
            instances.append(SchedulerActor(self.settings, **options))
            self.made.append(instances[-1])
            return instances[-1]

        await self.system.spawn(factory, name=name, identity="scheduler")
        if lead:
            await eventually(lambda: self.running(name), f"{name} leads", 10)
        return instances[0]

    def running(self, name: str) -> bool:
        return bool(self.system.status()[name]["state"] == ActorState.RUNNING)


def succeed(dispatch: Dispatch) -> BaseException | None:
    return None


@dataclass
class RecordingExecutor:
    """Consumes one category's dispatch queue; ``outcome`` decides how each attempt ends."""

    client: BusClient
    queue: str
    outcome: Outcome = succeed
    clock: Clock = field(default_factory=SystemClock)  # stamps completions
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
        now = self.clock.wall()
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
    """The embedded system with schedulers on a fake clock, which the store actor keeps time by
    too: the schedules' time passes only when the test advances ``clock``, through ``advance``
    (which lets a leading scheduler renew its lease as time passes, as it would)."""

    start_scheduler: Scheduling
    caller: Caller
    executor: RecordingExecutor
    system: ActorSystem
    clock: FakeClock

    async def leads(self, name: str) -> SchedulerActor:
        """A scheduler on the fake clock, once it leads and keeps its lease: on standby while a
        lease that was not released has not expired, time is advanced to its next ask for it."""
        scheduler = await self.start_scheduler(name=name, clock=self.clock, lead=False)

        async def leading() -> bool:
            lease = scheduler.lease
            if self.start_scheduler.running(name):
                return lease.waiting  # its run() keeps the lease
            if lease.waiting and lease.asleep_until is not None:  # on standby
                await self.advance(max(0.0, lease.asleep_until - self.clock.monotonic()) + 0.001)
            return False

        await eventually(leading, f"{name} leads", 10)
        return scheduler

    async def advance(self, seconds: float) -> None:
        """Let ``seconds`` pass on the fake clock. While a scheduler asks for or keeps its lease,
        time passes in steps shorter than its renewal interval, each step once every such
        scheduler has asked the store again if its time came; otherwise in one step."""
        end = self.clock.monotonic() + seconds
        while (left := end - self.clock.monotonic()) > 1e-9:
            keepers = [s.lease for s in self.start_scheduler.made if s.lease.waiting]
            step = min([left, *(keeper.interval_s / 2 for keeper in keepers)])
            self.clock.advance(step)
            if keepers:
                await eventually(self._asked, "the schedulers asked for their leases", 10)

    def _asked(self) -> bool:
        """Every scheduler asking for or keeping its lease is waiting for its next ask."""
        now = self.clock.monotonic()
        return all(
            not s.lease.waiting or (s.lease.asleep_until or now) > now
            for s in self.start_scheduler.made
        )


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
