"""SchedulerActor: serves ``scheduler.task.*``, fires due tasks, dispatches them and retries.

Only the holder of the scheduler lease takes messages: a standby waits in ``until_ready`` for the
lease (``actors.scheduling.lease``), so requests, firing and results all go to the leader. On
taking over it loads every task and recovers what no leader settled (``takeover``) and asks the
executors to announce their task classes (``catalogue``); then it serves requests (``requests``),
fires (``firing``), acts on results (``retries``), wakes suspended runs (``sleepers``),
controls runs (``runs``) and spawns child runs and asks queries (``children``). If it loses
the lease it dies, and its supervisor restarts it as a standby.

The class shows every topic it serves, each with the reader of its request; the collaborators do
the work, each given what it uses. Every store call goes through one ``StoreClient``; every sleep,
timer and timestamp comes from one ``Clock``. Topics and payloads: docs/protocol.md; the
guarantees: docs/scheduling.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from actors.actor import Actor, on_event, on_request, on_work
from actors.fireloop import FireLoop
from actors.scheduling import batch, children, requests, runs
from actors.scheduling.agents import AgentRules, AgentTaskAsk, AgentTasks, read_schedule
from actors.scheduling.backfill import BackfillAsk, Backfills, read_backfill
from actors.scheduling.background import Background
from actors.scheduling.batch import Apply, CreateMany, TaskBatches
from actors.scheduling.catalogue import Catalogue, read_announcement
from actors.scheduling.children import AnswerAsk, Children, QueryAsk, SpawnAsk
from actors.scheduling.dependencies import DependencyGate
from actors.scheduling.describe import DescribeAsk, Describing, read_describe
from actors.scheduling.events import Events
from actors.scheduling.firing import FIRE_LEAD_S, Firing
from actors.scheduling.gate import RunGate
from actors.scheduling.lease import LeaseKeeper, holder_name
from actors.scheduling.limits import RunLimits
from actors.scheduling.live_asks import LiveAsks
from actors.scheduling.owed import Owed
from actors.scheduling.owners import EXECUTOR_ROLE, Owners
from actors.scheduling.pausing import PauseAsk, Pausing, read_pause
from actors.scheduling.protocol import RESULT_QUEUE, RunResult, report_dropped
from actors.scheduling.requests import (
    NewTask,
    TaskExists,
    TaskPage,
    TaskPageOf,
    TaskRequests,
    Update,
)
from actors.scheduling.retries import Retries
from actors.scheduling.retrying import RetryAsk, RunRetries, read_retry
from actors.scheduling.roster import Roster
from actors.scheduling.runs import ControlAsk, RunPage, RunRequests, SignalAsk, TriggerAsk
from actors.scheduling.sleepers import Sleepers
from actors.scheduling.takeover import Takeover
from actors.scheduling.updates import UpdateAsk, Updates, read_update
from actors.storing.client import StoreClient
from actors.storing.wire import error_code
from bus import BusError, Delivery, Envelope, Refused
from bus.envelope import Payload
from config import topics
from config.agents import AgentSettings
from config.sections import SchedulerSettings
from scheduler import Clock, SystemClock, TaskPlan
from scheduler.overlap import Limits
from store.errors import Conflict, InvalidValue, LeaseLost, NotFound, StoreError
from store.records import TaskSpec
from tasks.errors import TaskPermissionError
from tasks.permissions import TaskPermissions, is_child_task

STORE_TIMEOUT_S = 10.0


class SchedulerActor(Actor):
    name = "scheduler"
    namespace = topics.TASK  # served as before: scheduler.task.* and scheduler.stats
    watches = (topics.STATUS_EVENTS + ".",)  # status events nobody listens to are not sent
    concurrency = 32

    def __init__(
        self,
        settings: SchedulerSettings | None = None,
        *,
        clock: Clock | None = None,
        holder: str | None = None,
        builtin: Sequence[TaskSpec] = (),
        owners: Owners | None = None,
        agents: AgentSettings | None = None,
        limits: Limits | None = None,
    ) -> None:
        """``builtin``: the code-defined tasks (with their configured schedule and options),
        put in the store at every takeover; their ``enabled`` flag is the store's once stored.
        ``owners`` says who may manage which task (default: the default roles' admins).
        ``agents``: what an agent may schedule for itself (``agent.task.schedule``).
        ``limits``: the runs at once per category and in total, across every executor (default:
        none; the executors' own limits still hold per process).
        """
        super().__init__()
        self.settings = settings = settings or SchedulerSettings()
        self.owners = owners = owners or Owners()
        self._holder = holder
        self._clock = clock = clock or SystemClock()
        self.counters: Counter[str] = Counter()
        self.catalogue = Catalogue()
        store = StoreClient(self.ask, timeout_s=STORE_TIMEOUT_S)
        lease_store = StoreClient(
            self.ask, timeout_s=min(STORE_TIMEOUT_S, settings.lease_ttl_s / 3)
        )
        self.lease = LeaseKeeper(lease_store, settings.lease_ttl_s, clock=clock)
        self.loop = FireLoop(self._on_plans, clock=clock, lead_s=FIRE_LEAD_S)
        self._background = Background()
        events = Events(self.publish)
        owed = Owed(self.lease, clock=clock, log=self.log)
        self._roster = roster = Roster(self.loop, clock=clock, log=self.log)
        self._firing = firing = Firing(
            store=store,
            owed=owed,
            lease=self.lease,
            roster=roster,
            enqueue=self._enqueue,
            events=events,
            counters=self.counters,
            clock=clock,
            settings=settings,
            background=self._background,
            log=self.log,
        )
        self._retries = retries = Retries(
            store=store,
            owed=owed,
            roster=roster,
            firing=firing,
            events=events,
            counters=self.counters,
            clock=clock,
            background=self._background,
            log=self.log,
            settings=settings,
        )
        # The gates every owed fire passes, in this order (docs/scheduling.md): dependencies first.
        self._dependencies = DependencyGate(
            store=store,
            owed=owed,
            lease=self.lease,
            roster=roster,
            firing=firing,
            retries=retries,
            events=events,
            counters=self.counters,
            clock=clock,
            settings=settings,
            background=self._background,
            log=self.log,
        )
        firing.add_gate(self._dependencies)
        # then overlap and concurrency (a cancel_other cancels through the run requests)
        self._run_gate = RunGate(
            firing=firing,
            store=store,
            owed=owed,
            lease=self.lease,
            roster=roster,
            events=events,
            counters=self.counters,
            clock=clock,
            background=self._background,
            limits=limits or Limits(),
            pending=retries.pending,
            cancel=lambda key, why: self._runs.control(
                self.identity, ControlAsk(key, why), "cancel"
            ),
            log=self.log,
        )
        firing.add_gate(self._run_gate)
        self._sleepers = sleepers = Sleepers(
            store=store,
            owed=owed,
            roster=roster,
            firing=firing,
            counters=self.counters,
            clock=clock,
            settings=settings,
            background=self._background,
            log=self.log,
        )
        self._takeover = Takeover(
            store=store,
            roster=roster,
            firing=firing,
            retries=retries,
            sleepers=sleepers,
            events=events,
            counters=self.counters,
            clock=clock,
            settings=settings,
            builtin=builtin,
            log=self.log,
        )
        self._requests = TaskRequests(
            store=store,
            owners=owners,
            permissions=TaskPermissions(),
            roster=roster,
            firing=firing,
            retries=retries,
            lease=self.lease,
            events=events,
            counters=self.counters,
            clock=clock,
            settings=settings,
            catalogue=self.catalogue,
        )
        agent_rules = AgentRules(agents or AgentSettings())
        self._requests.check_change = agent_rules.check_change
        self._agents = AgentTasks(
            store=store,
            requests=self._requests,
            catalogue=self.catalogue,
            rules=agent_rules,
            settings=settings,
        )
        self._batches = TaskBatches(
            requests=self._requests,
            store=store,
            lease=self.lease,
            refusal=self.refusal,
            settings=settings,
        )
        self._runs = RunRequests(
            store=store,
            owners=owners,
            sleepers=sleepers,
            retries=retries,
            publish=self.publish,
            clock=clock,
            log=self.log,
        )
        retries.given_up = self._runs.child_given_up
        asks = LiveAsks(publish=self.publish, clock=clock)  # queries' and updates' pushes
        self._children = Children(
            store=store,
            owners=owners,
            catalogue=self.catalogue,
            firing=firing,
            runs=self._runs,
            publish=self.publish,
            clock=clock,
            settings=settings,
            asks=asks,
        )
        self._updates = Updates(runs=self._runs, asks=asks)
        self._retrying = RunRetries(
            store=store,
            runs=self._runs,
            roster=roster,
            firing=firing,
            clock=clock,
            settings=settings,
        )
        self._backfills = Backfills(
            store=store,
            owners=owners,
            roster=roster,
            firing=firing,
            counters=self.counters,
            clock=clock,
        )
        # pause with a note, limited runs (max_runs) and describe
        firing.limits = RunLimits(
            store=store,
            roster=roster,
            events=events,
            counters=self.counters,
            clock=clock,
            background=self._background,
            log=self.log,
        )
        self._pausing = Pausing(
            store=store,
            owners=owners,
            roster=roster,
            lease=self.lease,
            events=events,
            counters=self.counters,
            clock=clock,
            settings=settings,
        )
        self._describing = Describing(
            store=store, owners=owners, roster=roster, clock=clock, settings=settings
        )

    # ------------------------------------------------------------ lifecycle

    async def until_ready(self) -> None:
        """Standby until the lease is granted; then load the tasks and recover, then fire."""
        await self.lease.acquire(self._holder or holder_name(self.identity))
        await self._takeover.load()
        await self._takeover.recover()
        self.loop.start()
        self.log.info(
            "scheduler %s leads (token %d): %d tasks",
            self.lease.holder,
            self.lease.token,
            len(self._roster),
        )

    async def run(self) -> None:
        """Keep the lease; die (and be restarted as a standby) if it, the fire loop or work
        started beside the handlers fails."""
        assert self.loop.done is not None
        # subscribed by now: the executors' answers reach this leader
        await self.publish(topics.CATALOGUE_WANTED)
        keeper = asyncio.ensure_future(self.lease.keep())
        try:
            done, _ = await asyncio.wait(
                [keeper, self.loop.done, self._background.failed],
                return_when=asyncio.FIRST_COMPLETED,
            )
            for finished in done:
                finished.result()  # raises why it ended
            raise LeaseLost("the fire loop ended")
        finally:
            keeper.cancel()

    async def on_stop(self) -> None:
        await self.loop.stop()
        self._run_gate.cancel_sweep()
        self._retries.cancel_all()
        self._dependencies.cancel_all()
        self._sleepers.cancel_all()
        await self._background.stop()
        await self.lease.release()

    def refusal(self, error: Exception) -> Refused | None:
        """The request's own fault passed on with its code; the store's or the bus's failure,
        or a lease lost meanwhile, as ``unavailable`` (the requester may ask again)."""
        if isinstance(error, InvalidValue):
            return Refused("invalid", str(error))
        if isinstance(error, TaskPermissionError):
            return Refused("denied", str(error))
        if isinstance(error, TaskExists):
            return Refused("exists", str(error))
        if isinstance(error, LeaseLost):
            return Refused("unavailable", f"this scheduler lost its lease: {error}")
        if isinstance(error, NotFound | Conflict):
            return Refused(error_code(error), str(error))
        if isinstance(error, TimeoutError):
            return Refused("unavailable", f"the store did not answer: {error}")
        if isinstance(error, StoreError | BusError):
            return Refused("unavailable", f"the store failed: {error}")
        return None

    # ------------------------------------------------------------ requests

    @on_request(topics.TASK_CREATE, read=requests.read_create)
    async def create(self, request: Envelope, new: NewTask) -> Payload:
        return await self._requests.create(request.sender, new)

    @on_request(topics.TASK_CREATE_MANY, read=batch.read_create_many)
    async def create_many(self, request: Envelope, many: CreateMany) -> Payload:
        return await self._batches.create_many(request.sender, many)

    @on_request(topics.TASK_APPLY, read=batch.read_apply)
    async def apply(self, request: Envelope, ask: Apply) -> Payload:
        return await self._batches.apply(request.sender, ask)

    @on_request(topics.TASK_UPDATE, read=requests.read_update)
    async def update(self, request: Envelope, update: Update) -> Payload:
        return await self._requests.update(request.sender, update)

    @on_request(topics.TASK_DELETE, read=requests.read_task_ref)
    async def delete(self, request: Envelope, task_id: str) -> Payload:
        return await self._requests.delete(request.sender, task_id)

    @on_request(topics.TASK_ENABLE, read=requests.read_task_ref)
    async def enable(self, request: Envelope, task_id: str) -> Payload:
        return await self._requests.set_enabled(request.sender, task_id, enabled=True)

    @on_request(topics.TASK_DISABLE, read=requests.read_task_ref)
    async def disable(self, request: Envelope, task_id: str) -> Payload:
        return await self._requests.set_enabled(request.sender, task_id, enabled=False)

    @on_request(topics.TASK_TRIGGER, read=runs.read_trigger)
    async def trigger(self, request: Envelope, ask: TriggerAsk) -> Payload:
        return await self._requests.trigger(request.sender, ask.task_id, ask.key)

    @on_request(topics.TASK_BACKFILL, read=read_backfill)
    async def backfill(self, request: Envelope, ask: BackfillAsk) -> Payload:
        return await self._backfills.backfill(request.sender, ask)

    @on_request(topics.TASK_PAUSE, read=read_pause)
    async def pause(self, request: Envelope, ask: PauseAsk) -> Payload:
        return await self._pausing.pause(request.sender, ask)

    @on_request(topics.TASK_UNPAUSE, read=requests.read_task_ref)
    async def unpause(self, request: Envelope, task_id: str) -> Payload:
        return await self._pausing.unpause(request.sender, task_id)

    @on_request(topics.TASK_DESCRIBE, read=read_describe)
    async def describe(self, request: Envelope, ask: DescribeAsk) -> Payload:
        return await self._describing.describe(request.sender, ask)

    @on_request(topics.TASK_RESET, read=requests.read_task_ref)
    async def reset(self, request: Envelope, task_id: str) -> Payload:
        return await self._requests.reset(request.sender, task_id)

    @on_request(topics.TASK_STATUS, read=requests.read_task_ref)
    async def status(self, request: Envelope, task_id: str) -> Payload:
        return await self._requests.status(request.sender, task_id)

    @on_request(topics.TASK_GET, read=requests.read_task_ref)
    async def get(self, request: Envelope, task_id: str) -> Payload:
        return await self._requests.get(request.sender, task_id)

    @on_request(topics.TASK_LIST, read=requests.read_task_page)
    async def list_tasks(self, request: Envelope, page: TaskPage) -> Payload:
        return await self._requests.list_tasks(request.sender, page)

    @on_request(topics.TASK_HISTORY, read=requests.read_task_page_of)
    async def history(self, request: Envelope, page: TaskPageOf) -> Payload:
        return await self._requests.history(request.sender, page)

    @on_request(topics.TASK_MISSED, read=requests.read_task_page_of)
    async def missed(self, request: Envelope, page: TaskPageOf) -> Payload:
        return await self._requests.missed(request.sender, page)

    @on_request(topics.RUN_GET, read=requests.read_run_ref)
    async def get_run(self, request: Envelope, execution_id: str) -> Payload:
        return await self._requests.get_run(request.sender, execution_id)

    @on_request(topics.RUN_SIGNAL, read=runs.read_signal)
    async def signal_run(self, request: Envelope, ask: SignalAsk) -> Payload:
        return await self._runs.signal(request.sender, ask)

    @on_request(topics.RUN_CANCEL, read=runs.read_cancel)
    async def cancel_run(self, request: Envelope, ask: ControlAsk) -> Payload:
        return await self._runs.control(request.sender, ask, "cancel")

    @on_request(topics.RUN_PAUSE, read=runs.read_run)
    async def pause_run(self, request: Envelope, ask: ControlAsk) -> Payload:
        return await self._runs.control(request.sender, ask, "pause")

    @on_request(topics.RUN_RESUME, read=runs.read_run)
    async def resume_run(self, request: Envelope, ask: ControlAsk) -> Payload:
        return await self._runs.control(request.sender, ask, "resume")

    @on_request(topics.RUN_LIST, read=runs.read_run_page)
    async def list_runs(self, request: Envelope, page: RunPage) -> Payload:
        return await self._runs.list_runs(request.sender, page)

    @on_request(topics.RUN_TREE, read=runs.read_run)
    async def run_tree(self, request: Envelope, ask: ControlAsk) -> Payload:
        return await self._children.tree(request.sender, ask.run)

    @on_request(topics.RUN_UPDATE, read=read_update)
    async def update_run(self, request: Envelope, ask: UpdateAsk) -> Payload:
        return await self._updates.update(request.sender, ask)

    @on_request(topics.RUN_RETRY, read=read_retry)
    async def retry_run(self, request: Envelope, ask: RetryAsk) -> Payload:
        return await self._retrying.retry(request.sender, ask)

    @on_request(topics.RUN_QUERY, read=children.read_query)
    async def query_run(self, request: Envelope, ask: QueryAsk) -> Payload:
        return await self._children.query(request.sender, ask)

    @on_request(topics.EXEC_SPAWN, read=children.read_spawn)
    async def spawn(self, request: Envelope, ask: SpawnAsk) -> Payload:
        return await self._children.spawn(request.sender, ask)

    @on_request(topics.EXEC_ANSWER, read=children.read_answer)
    async def answer(self, request: Envelope, ask: AnswerAsk) -> Payload:
        return self._children.answer(request.sender, ask)

    @on_request(topics.AGENT_TASK_SCHEDULE, read=read_schedule)
    async def schedule_agent_task(self, request: Envelope, ask: AgentTaskAsk) -> Payload:
        return await self._agents.schedule(request.sender, ask)

    @on_request(topics.SCHEDULER_STATS, read=requests.read_nothing)
    async def stats(self, request: Envelope, _: None) -> Payload:
        return await self._requests.stats()

    # ------------------------------------------------------------ the executors' classes

    @on_event(topics.CATALOGUE_EVENTS)
    async def on_catalogue(self, event: Envelope) -> None:
        """An executor's task classes, kept for the checks of create and update; one from anyone
        but an executor, or that cannot be read, is ignored and logged."""
        sender = event.sender
        if not self.owners.roles.has(EXECUTOR_ROLE, sender):
            self.log.warning("catalogue from %r ignored: not an executor", sender)
            return
        try:
            category = event.topic.removeprefix(topics.CATALOGUE_EVENTS)
            announcement = read_announcement(category, event.payload)
        except InvalidValue as exc:
            self.log.warning("catalogue from %r ignored: %s", sender, exc)
            return
        self.catalogue.learn(sender, announcement)

    # ------------------------------------------------------------ results

    @on_work(RESULT_QUEUE, credit=100)
    async def on_result(self, delivery: Delivery) -> None:
        """An executor's result; one that cannot be read, comes from anyone but an executor or
        names no failed attempt the store knows is dropped and reported (and acknowledged: it
        would fail the same way again)."""
        try:
            result = RunResult.read(delivery.envelope.payload)
        except InvalidValue as exc:
            await report_dropped(self, RESULT_QUEUE, delivery, exc)
            return
        sender = delivery.envelope.sender
        if not self.owners.roles.has(EXECUTOR_ROLE, sender):
            reason = f"{sender!r} is not an executor (bus.roles.executor): its result is dropped"
            await report_dropped(self, RESULT_QUEUE, delivery, reason)
            return
        if result.suspended:
            self._sleepers.suspended(result)
            await self._firing.attempt_ended(result, final=False)
            return
        dropped = await self._retries.settle(result)
        if dropped is not None:
            await report_dropped(self, RESULT_QUEUE, delivery, dropped)
            return
        retried = any(
            instant == result.scheduled_at for instant, _ in self._retries.pending(result.task_id)
        )
        await self._firing.attempt_ended(result, final=not retried)
        if result.success and not result.cancelled and is_child_task(result.task_id):
            await self._runs.child_succeeded(
                result.task_id, result.scheduled_at, result.execution_id
            )

    # ------------------------------------------------------------ wiring

    async def _on_plans(self, plans: list[TaskPlan], now: datetime) -> None:
        await self._firing.on_plans(plans, now)

    def _enqueue(self, queue: str, payload: Payload, message_id: bytes) -> asyncio.Future[bytes]:
        return self.bus.enqueue_nowait(queue, payload, message_id=message_id)
