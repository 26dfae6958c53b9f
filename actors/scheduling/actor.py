"""SchedulerActor: serves ``scheduler.task.*``, fires due tasks, dispatches them and retries.

Only the holder of the scheduler lease takes messages: a standby waits in ``until_ready`` for the
lease (``actors.scheduling.lease``), so requests, firing and results all go to the leader. On
taking over it loads every task from the store (with its last fire, so downtime goes through each
task's misfire policy), dispatches again every execution left unfinished and re-decides every
failed attempt not yet retried or given up. If it loses the lease it dies, and its supervisor
restarts it as a standby.

A due fire is **recorded in the store first**, fenced by the lease's token and made unique by its
idempotency key (task id, scheduled instant, attempt), and only then dispatched; a duplicate
record (the fire was recorded before, by this or another scheduler) is dispatched again only if
the execution is unfinished, under the same work id, which the broker holds once. Topics and
payloads: docs/protocol.md; the guarantees: docs/scheduling.md.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from actors.actor import Actor, RequestRefused, on_request, on_work
from actors.fireloop import FireLoop
from actors.scheduling import definitions
from actors.scheduling.definitions import POLICY_FIELDS, CompiledTask
from actors.scheduling.lease import Lease, LeaseLost, holder_name
from actors.scheduling.owners import EXECUTOR_ROLE, Owners
from actors.scheduling.protocol import (
    DEAD_TOPIC,
    RESULT_QUEUE,
    STATUS_TOPIC,
    Dispatch,
    RunResult,
    dispatch_queue,
    owner_topic,
    report_dropped,
    work_id,
)
from actors.store import payloads
from actors.store.errors import InvalidValue
from actors.store.payloads import Fields, plain
from actors.store.records import TaskRecord, TaskSpec
from bus import AskTimeout, BusError, Delivery, Envelope, RemoteError
from bus.envelope import Payload
from config.sections import SchedulerSettings
from scheduler import Clock, MisfirePlan, SystemClock, TaskPlan, Timer, jittered, sleep
from scheduler.retry import DeadLetter

Handler = Callable[[Envelope, Fields], Awaitable[Payload]]
STORE_TIMEOUT_S = 10.0
RETRY_PAUSE_S = 0.5  # between attempts to write a fire the store did not answer
RECOVERY_PAGE = 500
FIRE_BATCH = 500  # fires recorded (and dispatched) per store write
FIRE_BATCHES_IN_FLIGHT = 4  # batches at once: one commits while another is dispatched
SETTLING = 64  # plans with missed runs or jitter settled at once, one store write each
_PASSED_ON = ("not_found", "conflict", "invalid")  # store refusals the requester caused


@dataclass(frozen=True, slots=True)
class _Recorded:
    """A fire as the store recorded it (``execution``: the record; ``duplicate``: recorded
    before, by this or an earlier leader)."""

    task: CompiledTask
    instant: datetime
    attempt: int
    coalesced: int
    reason: str
    execution: Mapping[str, Any]
    duplicate: bool

    @property
    def execution_id(self) -> str:
        return str(self.execution["execution_id"])


class SchedulerActor(Actor):
    name = "scheduler"
    concurrency = 32

    def __init__(
        self,
        settings: SchedulerSettings | None = None,
        *,
        clock: Clock | None = None,
        holder: str | None = None,
        builtin: Sequence[TaskSpec] = (),
        owners: Owners | None = None,
    ) -> None:
        """``builtin``: the code-defined tasks (with their configured schedule and options),
        put in the store at every takeover; their ``enabled`` flag is the store's once stored.
        ``owners`` says who may manage which task (default: the default roles' admins).
        """
        super().__init__()
        self.settings = settings or SchedulerSettings()
        self.owners = owners or Owners()
        self._builtin = tuple(builtin)
        self._clock = clock or SystemClock()
        self._holder = holder
        self.lease: Lease | None = None
        self.loop = FireLoop(self._on_plans, clock=self._clock)
        self._tasks: dict[str, CompiledTask] = {}
        self._retries: dict[tuple[str, datetime, int], Timer] = {}
        # (task, version) whose stored schedule's changed meaning was logged
        self._noted: set[tuple[str, int]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._fatal: asyncio.Future[None] | None = None
        self.counters: Counter[str] = Counter()
        self._handlers: dict[str, Handler] = {
            "scheduler.task.create": self._create,
            "scheduler.task.update": self._update,
            "scheduler.task.delete": self._delete,
            "scheduler.task.enable": self._enable,
            "scheduler.task.disable": self._disable,
            "scheduler.task.trigger": self._trigger,
            "scheduler.task.reset": self._reset,
            "scheduler.task.status": self._status,
            "scheduler.task.get": self._get,
            "scheduler.task.list": self._list,
            "scheduler.task.history": self._history,
            "scheduler.task.missed": self._missed,
            "scheduler.stats": self._stats,
        }

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    # ------------------------------------------------------------ lifecycle

    async def until_ready(self) -> None:
        """Standby until the lease is granted; then load the tasks and recover, then fire."""
        self._fatal = asyncio.get_running_loop().create_future()
        self.lease = Lease(
            self.ask, self._holder or holder_name(self.identity), self.settings.lease_ttl_s
        )
        await self.lease.acquire()
        await self._load_tasks()
        await self._recover()
        self.loop.start()
        self.log.info(
            "scheduler %s leads (token %d): %d tasks",
            self.lease.holder,
            self.lease.token,
            len(self._tasks),
        )

    async def run(self) -> None:
        """Keep the lease; die (and be restarted as a standby) if it, or the fire loop, fails."""
        assert self.lease is not None
        assert self._fatal is not None
        assert self.loop.done is not None
        keeper = asyncio.ensure_future(self.lease.keep())
        try:
            done, _ = await asyncio.wait(
                [keeper, self.loop.done, self._fatal], return_when=asyncio.FIRST_COMPLETED
            )
            for finished in done:
                finished.result()  # raises why it ended
            raise LeaseLost("the fire loop ended")
        finally:
            keeper.cancel()

    async def on_stop(self) -> None:
        await self.loop.stop()
        for timer in self._retries.values():
            timer.cancel()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.lease is not None:
            await self.lease.release()

    # ------------------------------------------------------------ requests

    @on_request("scheduler.task.")
    async def serve_task(self, request: Envelope) -> Payload:
        return await self._serve(request)

    @on_request("scheduler.stats")
    async def serve_stats(self, request: Envelope) -> Payload:
        return await self._serve(request)

    async def _serve(self, request: Envelope) -> Payload:
        handler = self._handlers.get(request.topic)
        if handler is None:
            known = ", ".join(self._handlers)
            raise RequestRefused(
                "unknown_topic",
                f"the scheduler does not answer {request.topic!r}; it answers {known}",
            )
        try:
            return await handler(request, Fields(request.payload))
        except InvalidValue as exc:
            raise RequestRefused("invalid", str(exc)) from exc
        except RemoteError as exc:
            if exc.code in _PASSED_ON:
                raise RequestRefused(exc.code, exc.reason) from exc
            raise RequestRefused("unavailable", f"the store failed: {exc}") from exc
        except TimeoutError as exc:
            raise RequestRefused("unavailable", f"the store did not answer: {exc}") from exc

    async def _create(self, request: Envelope, fields: Fields) -> Payload:
        spec = definitions.read_create(fields, owner=request.sender, settings=self.settings)
        fields.done()
        category = definitions.category(spec.task_id)
        if category != "user":
            raise RequestRefused(
                "denied",
                f"{spec.task_id!r}: {category} tasks are defined in code; only user.* tasks "
                "can be created over the bus",
            )
        return await self._put(spec, expected_version=0, stored=None)

    async def _update(self, request: Envelope, fields: Fields) -> Payload:
        task_id = definitions.task_id(fields)
        expected = fields.optional("expected_version", payloads.positive, None)
        changes = definitions.read_changes(fields)
        fields.done()
        policies = {n: request.payload[n] for n in POLICY_FIELDS if n in request.payload}
        stored = await self._owned(request, task_id, "update")
        if "task_class" in changes and definitions.category(task_id) != "user":
            raise RequestRefused(
                "denied", f"{task_id!r} is defined in code: its task_class cannot change"
            )
        spec = definitions.apply_changes(stored, changes, policies, self.settings)
        return await self._put(spec, expected_version=expected or stored.version, stored=stored)

    async def _enable(self, request: Envelope, fields: Fields) -> Payload:
        return await self._set_enabled(request, fields, enabled=True)

    async def _disable(self, request: Envelope, fields: Fields) -> Payload:
        return await self._set_enabled(request, fields, enabled=False)

    async def _set_enabled(self, request: Envelope, fields: Fields, *, enabled: bool) -> Payload:
        task_id = definitions.task_id(fields)
        fields.done()
        stored = await self._owned(request, task_id, "enable" if enabled else "disable")
        spec = definitions.apply_changes(stored, {"enabled": enabled}, {}, self.settings)
        return await self._put(spec, expected_version=stored.version, stored=stored)

    async def _delete(self, request: Envelope, fields: Fields) -> Payload:
        task_id = definitions.task_id(fields)
        fields.done()
        category = definitions.category(task_id)
        if category != "user":
            raise RequestRefused(
                "denied",
                f"{task_id!r}: {category} tasks are defined in code; they can be disabled, "
                "not deleted",
            )
        stored = await self._owned(request, task_id, "delete")
        reply = await self._store("store.task.delete", {"task_id": task_id})
        self._forget(task_id)
        if not reply.payload["deleted"]:
            raise RequestRefused("not_found", f"task {task_id!r} not found")
        await self._status_event(stored.owner, task_id, "deleted")
        return {"deleted": task_id}

    async def _trigger(self, request: Envelope, fields: Fields) -> Payload:
        """Run now, outside the schedule: a fire whose instant is now (its own key)."""
        task_id = definitions.task_id(fields)
        fields.done()
        task = self._tasks.get(task_id)
        if task is None:
            stored = await self._stored(task_id)  # not_found, or known but disabled
            task = definitions.compile_task(stored, self.settings)
        self.owners.check(request.sender, task.record.owner, task_id, "trigger")
        execution_id = await self._fire(task, self._clock.wall(), attempt=1, reason="trigger")
        return {"task_id": task_id, "execution_id": execution_id}

    async def _reset(self, request: Envelope, fields: Fields) -> Payload:
        """Forget the last run: the next fire is the first one after now, nothing is missed."""
        task_id = definitions.task_id(fields)
        fields.done()
        await self._owned(request, task_id, "reset")
        reply = await self._store(
            "store.task.reset",
            {"task_id": task_id, "accounted_through": self._clock.wall().isoformat()},
        )
        record = definitions.record_from_plain(reply.payload["task"])
        self.loop.engine.forget(task_id)
        return await self._schedule(record)

    async def _status(self, request: Envelope, fields: Fields) -> Payload:
        task_id = definitions.task_id(fields)
        fields.done()
        record = await self._owned(request, task_id, "read")
        reply = await self._store("store.task.status", {"task_id": task_id})
        next_fire = self.loop.engine.next_fire(task_id)
        retries = sorted(
            (when_, attempt) for (tid, when_, attempt) in self._retries if tid == task_id
        )
        return {
            "status": reply.payload["status"],
            "next_fire": None if next_fire is None else next_fire.isoformat(),
            "schedule_note": self._meaning_note(record),
            "pending_retries": [
                {"scheduled_at": when_.isoformat(), "attempt": attempt}
                for when_, attempt in retries
            ],
        }

    def _note_meaning(self, task: CompiledTask) -> None:
        """Log, once per task and version, that its stored schedule changed meaning."""
        key = (task.task_id, task.record.version)
        if key in self._noted:
            return
        note = definitions.meaning_note(task, self._clock.wall())
        if note is not None:
            self._noted.add(key)
            self.log.warning("%s: %s", task.task_id, note)

    def _meaning_note(self, record: TaskRecord) -> str | None:
        try:
            task = definitions.compile_task(record, self.settings)
        except InvalidValue:
            return None  # a stored task that does not compile here says so on its own
        return definitions.meaning_note(task, self._clock.wall())

    async def _get(self, request: Envelope, fields: Fields) -> Payload:
        task_id = definitions.task_id(fields)
        fields.done()
        return {"task": plain(await self._owned(request, task_id, "read"))}

    async def _list(self, request: Envelope, fields: Fields) -> Payload:
        after = fields.optional("after", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 100)
        with_status = fields.optional("with_status", payloads.flag, False)
        fields.done()
        page: dict[str, Any] = {"after": after, "limit": limit}
        if not self.owners.is_admin(request.sender):
            page["owner"] = request.sender  # everyone else sees their own tasks only
        reply = await self._store("store.task.list", page)
        if not with_status:
            return dict(reply.payload)
        tasks = [dict(task) for task in reply.payload["tasks"]]
        statuses = await asyncio.gather(
            *(self._store("store.task.status", {"task_id": task["task_id"]}) for task in tasks)
        )
        for task, status in zip(tasks, statuses, strict=True):
            next_fire = self.loop.engine.next_fire(task["task_id"])
            task["next_fire"] = None if next_fire is None else next_fire.isoformat()
            task["status"] = status.payload["status"]
        return {**reply.payload, "tasks": tasks}  # next_cursor, and any rows left unreadable

    async def _history(self, request: Envelope, fields: Fields) -> Payload:
        """A task's executions, latest first, in pages (the store's ``store.execution.history``)."""
        task_id = definitions.task_id(fields)
        before = fields.optional("before", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 50)
        fields.done()
        await self._owned(request, task_id, "read")
        reply = await self._store(
            "store.execution.history", {"task_id": task_id, "before": before, "limit": limit}
        )
        return dict(reply.payload)

    async def _missed(self, request: Envelope, fields: Fields) -> Payload:
        """A task's fires that did not run, with their reasons, latest first, in pages."""
        task_id = definitions.task_id(fields)
        before = fields.optional("before", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 50)
        fields.done()
        await self._owned(request, task_id, "read")
        reply = await self._store(
            "store.missed.list", {"task_id": task_id, "before": before, "limit": limit}
        )
        return dict(reply.payload)

    async def _stats(self, request: Envelope, fields: Fields) -> Payload:
        fields.done()
        assert self.lease is not None
        store = await self._store("store.stats", {"per_task": False})
        upcoming = self.loop.engine.next_due()
        return {
            "leader": self.lease.holder,
            "lease_token": self.lease.token,
            "tasks": len(self._tasks),
            "scheduled": len(self.loop.engine),
            "next_due": None
            if upcoming is None
            else {"task_id": upcoming[0], "at": upcoming[1].isoformat()},
            "pending_retries": len(self._retries),
            "counters": dict(self.counters),
            "runs": store.payload["overall"],
        }

    # ------------------------------------------------------------ task changes

    async def _owned(self, request: Envelope, task_id: str, action: str) -> TaskRecord:
        """The stored task, if the requester may ``action`` it; ``not_found``, else ``denied``."""
        stored = await self._stored(task_id)
        self.owners.check(request.sender, stored.owner, task_id, action)
        return stored

    async def _stored(self, task_id: str) -> TaskRecord:
        reply = await self._store("store.task.get", {"task_id": task_id})
        return definitions.record_from_plain(reply.payload["task"])

    async def _put(
        self, spec: TaskSpec, *, expected_version: int, stored: TaskRecord | None
    ) -> Payload:
        """Store a new or changed definition. A new task, a changed schedule and an enabled
        task owe the fires after now, not those before (which were not theirs to run); any other
        change keeps what the task owes."""
        now = self._clock.wall()
        if definitions.fires_anew(stored, spec):
            definitions.check_fires_after(spec, self.settings, now)
            spec = replace(spec, accounted_through=now)
        reply = await self._store(
            "store.task.put", _put_payload(spec) | {"expected_version": expected_version}
        )
        record = definitions.record_from_plain(reply.payload["task"])
        result = await self._schedule(record)
        if not reply.payload["duplicate"]:
            await self._status_event(
                record.owner, record.task_id, "defined", version=record.version
            )
        return result

    async def _schedule(self, record: TaskRecord) -> Payload:
        """Put a stored task in the engine (or take it out if disabled); reply with it."""
        task = definitions.compile_task(record, self.settings)
        self._note_meaning(task)
        next_fire = None
        if record.enabled:
            self._tasks[record.task_id] = task
            next_fire = self.loop.put(
                record.task_id,
                task.schedule,
                task.policies.misfire,
                last_fired=definitions.accounted_through(record),
            )
        else:
            self._forget(record.task_id)
        if next_fire != record.next_run:
            reply = await self._store(
                "store.task.mark_run",
                {"task_id": record.task_id, "next_run": _iso(next_fire)},
            )
            record = definitions.record_from_plain(reply.payload["task"])
        return {"task": plain(record)}

    def _forget(self, task_id: str) -> None:
        self._tasks.pop(task_id, None)
        self.loop.remove(task_id)
        for key in [k for k in self._retries if k[0] == task_id]:
            self._retries.pop(key).cancel()

    # ------------------------------------------------------------ taking over

    async def _put_builtin(self) -> None:
        """Code-defined tasks as the code and the configuration define them now."""
        for spec in self._builtin:
            try:
                stored = await self._stored(spec.task_id)
            except RemoteError as exc:
                if exc.code != "not_found":
                    raise
                new = replace(spec, accounted_through=self._clock.wall())  # owes from now on
                await self._store("store.task.put", _put_payload(new) | {"expected_version": 0})
                continue
            wanted = replace(spec, enabled=stored.enabled, owner=stored.owner)
            if wanted != definitions.spec_of(stored):
                await self._store(
                    "store.task.put", _put_payload(wanted) | {"expected_version": stored.version}
                )

    async def _load_tasks(self) -> None:
        await self._put_builtin()
        now = self._clock.wall()
        stale: list[dict[str, Any]] = []  # next runs to store; due ones are stored when fired
        after: str | None = None
        while True:
            reply = await self._store("store.task.list", {"after": after, "limit": 1000})
            for plain_task in reply.payload["tasks"]:
                record = definitions.record_from_plain(plain_task)
                if not record.enabled:
                    continue
                try:
                    task = definitions.compile_task(record, self.settings)
                except InvalidValue as exc:  # e.g. a time zone this host does not know
                    self.log.error("task %s cannot be scheduled: %s", record.task_id, exc)
                    await self._status_event(
                        record.owner, record.task_id, "invalid", reason=str(exc)
                    )
                    continue
                self._tasks[record.task_id] = task
                self._note_meaning(task)
                next_fire = self.loop.put(
                    record.task_id,
                    task.schedule,
                    task.policies.misfire,
                    last_fired=definitions.accounted_through(record),
                )
                if next_fire != record.next_run and (next_fire or now) >= now:
                    stale.append({"task_id": record.task_id, "next_run": _iso(next_fire)})
            if stale:  # one write for the page, not a request per task
                await self._store("store.execution.record_many", {"marks": stale})
            stale.clear()
            after = reply.payload["next_cursor"]
            if after is None:
                return

    async def _recover(self) -> None:
        """Dispatch unfinished executions again; re-decide failed attempts not yet settled."""
        since = self._clock.wall() - timedelta(seconds=self.settings.recovery_window_s)
        after: str | None = None
        while True:
            reply = await self._store(
                "store.execution.unsettled",
                {"since": since.isoformat(), "after": after, "limit": RECOVERY_PAGE},
            )
            for execution in reply.payload["executions"]:
                await self._recover_one(execution)
            after = reply.payload["next_cursor"]
            if after is None:
                return

    async def _recover_one(self, execution: dict[str, Any]) -> None:
        task = self._tasks.get(execution["task_id"])
        if task is None:  # deleted or disabled since: its runs are not owed any more
            return
        scheduled = payloads.instant("scheduled_at", execution["scheduled_at"])
        attempt = int(execution["retry_count"]) + 1
        if execution["success"] is None:
            self.counters["recovered_dispatches"] += 1
            await self._dispatch(task, execution["execution_id"], scheduled, attempt)
            return
        self.counters["recovered_failures"] += 1
        await self._after_failure(task, _failure_of(execution))

    # ------------------------------------------------------------ firing

    async def _on_plans(self, plans: list[TaskPlan], now: datetime) -> None:
        """A tick's plans: the plain ones (runs due now, nothing missed, no jitter) are recorded
        and marked in batches, a store write per batch; the others one by one. Either way at
        most SETTLING plans or FIRE_BATCHES_IN_FLIGHT batches talk to the store at once, so
        thousands of fires due together do not flood its mailbox.
        """
        plain_plans: list[tuple[CompiledTask, MisfirePlan]] = []
        others: list[TaskPlan] = []
        for task_plan in plans:
            task = self._tasks.get(task_plan.task_id)
            if task is None:
                continue
            plan = task_plan.plan
            if (
                plan.missed
                or plan.unlisted is not None
                or len(plan.runs) > FIRE_BATCH
                or (plan.runs and task.policies.run.jitter_s > 0)
            ):
                others.append(task_plan)
            else:
                plain_plans.append((task, plan))
        settling = asyncio.Semaphore(SETTLING)

        async def settle(task_plan: TaskPlan) -> None:
            async with settling:
                await self._settle(task_plan, now)

        await asyncio.gather(
            self._fire_batches(plain_plans), *(settle(task_plan) for task_plan in others)
        )

    async def _fire_batches(self, plans: list[tuple[CompiledTask, MisfirePlan]]) -> None:
        batches: list[list[tuple[CompiledTask, MisfirePlan]]] = []
        size = 0
        for task, plan in plans:
            weight = max(1, len(plan.runs))
            if not batches or size + weight > FIRE_BATCH:
                batches.append([])
                size = 0
            batches[-1].append((task, plan))
            size += weight
        in_flight = asyncio.Semaphore(FIRE_BATCHES_IN_FLIGHT)

        async def fire(batch: list[tuple[CompiledTask, MisfirePlan]]) -> None:
            async with in_flight:
                await self._fire_batch(batch)

        await asyncio.gather(*(fire(batch) for batch in batches))

    async def _fire_batch(self, batch: list[tuple[CompiledTask, MisfirePlan]]) -> None:
        """Record the fires of ``batch`` and the tasks' last and next runs in one fenced write,
        then dispatch every fire that is not finished yet, then publish them ``queued``.

        The last run is stored in the same transaction as the records: a scheduler that dies
        before dispatching leaves them unfinished, and the next leader dispatches them again.
        """
        assert self.lease is not None
        started = self._clock.wall().isoformat()
        fires = [(task, run) for task, plan in batch for run in plan.runs]
        reply = await self._owed(
            "store.execution.record_many",
            {
                "executions": [
                    {
                        "task_id": task.task_id,
                        "scheduled_at": run.instant.isoformat(),
                        "started_at": started,
                        "retry_count": 0,
                    }
                    for task, run in fires
                ],
                "marks": [
                    {
                        "task_id": task.task_id,
                        "last_run": _iso(plan.through),
                        "next_run": _iso(self.loop.engine.next_fire(task.task_id)),
                    }
                    for task, plan in batch
                ],
                "fence": self.lease.fence,
            },
        )
        await self._dispatch_recorded(
            [
                _Recorded(
                    task,
                    run.instant,
                    attempt=1,
                    coalesced=run.coalesced,
                    reason="schedule",
                    execution=execution,
                    duplicate=execution["duplicate"],
                )
                for (task, run), execution in zip(fires, reply.payload["executions"], strict=True)
            ]
        )

    async def _dispatch_recorded(self, fires: list[_Recorded]) -> None:
        """Dispatch the recorded fires that are owed (a duplicate that finished is not), then
        publish each ``queued``."""
        owed = []
        for fire in fires:
            if fire.duplicate:
                self.counters["duplicate_fires"] += 1
                if fire.execution["success"] is not None:
                    continue  # ran already: nothing is owed
            else:
                self.counters["fires"] += 1
            owed.append(fire)
        await self._dispatch_all([(f.task, f.execution_id, f.instant, f.attempt) for f in owed])
        for fire in owed:
            await self._status_event(
                fire.task.record.owner,
                fire.task.task_id,
                "queued",
                execution_id=fire.execution_id,
                scheduled_at=fire.instant.isoformat(),
                attempt=fire.attempt,
                coalesced=fire.coalesced,
                reason=fire.reason,
            )

    async def _settle(self, task_plan: TaskPlan, now: datetime) -> None:
        task = self._tasks.get(task_plan.task_id)
        if task is None:
            return
        try:
            await self._settle_plan(task, task_plan)
        except RemoteError as exc:
            if exc.code != "not_found":
                raise
            # Deleted while this fire was being recorded: nothing is owed to a deleted task.
            self.log.info("%s deleted while firing; fire dropped: %s", task.task_id, exc)

    async def _settle_plan(self, task: CompiledTask, task_plan: TaskPlan) -> None:
        """Record what did not run, record each run and dispatch it (a jittered one after its
        delay: recorded first, so that a scheduler that dies meanwhile leaves it to the next
        leader's recovery), then account for the plan."""
        plan = task_plan.plan
        await self._record_missed(task, plan)
        for run in plan.runs:
            fire = await self._record_fire(
                task, run.instant, attempt=1, coalesced=run.coalesced, reason="schedule"
            )
            delay = 0.0
            if task.policies.run.jitter_s > 0:
                due = jittered(run.instant, task.task_id, task.policies.run.jitter_s)
                delay = (due - self._clock.wall()).total_seconds()
            if delay > 0 and not fire.duplicate:
                self._spawn(self._dispatch_later(fire, delay))
            else:
                await self._dispatch_recorded([fire])
        await self._owed(
            "store.task.mark_run",
            {
                "task_id": task.task_id,
                "last_run": _iso(plan.through),
                "next_run": _iso(self.loop.engine.next_fire(task.task_id)),
            },
        )

    async def _dispatch_later(self, fire: _Recorded, delay: float) -> None:
        """Dispatch a recorded fire once its jitter has passed; if its task was deleted or
        disabled meanwhile, end the run as not started instead."""
        await sleep(self._clock, delay)
        if fire.task.task_id in self._tasks:
            await self._dispatch_recorded([fire])
            return
        self.log.info("%s gone while jitter held its fire back; fire dropped", fire.task.task_id)
        await self._owed(
            "store.execution.finish",
            {
                "execution_id": fire.execution_id,
                "completed_at": self._clock.wall().isoformat(),
                "success": False,
                "error_message": "not started: the task was deleted or disabled during its "
                "jitter delay",
            },
        )

    async def _fire(
        self,
        task: CompiledTask,
        instant: datetime,
        *,
        attempt: int,
        coalesced: int = 0,
        reason: str = "schedule",
    ) -> str:
        """Record the fire (fenced, idempotent), then dispatch it; returns the execution id."""
        fire = await self._record_fire(
            task, instant, attempt=attempt, coalesced=coalesced, reason=reason
        )
        await self._dispatch_recorded([fire])
        return fire.execution_id

    async def _record_fire(
        self, task: CompiledTask, instant: datetime, *, attempt: int, coalesced: int, reason: str
    ) -> _Recorded:
        """Record one attempt of a fire, fenced by the lease and once per attempt."""
        assert self.lease is not None
        reply = await self._owed(
            "store.execution.record",
            {
                "task_id": task.task_id,
                "scheduled_at": instant.isoformat(),
                "started_at": self._clock.wall().isoformat(),
                "retry_count": attempt - 1,
                "fence": self.lease.fence,
            },
        )
        return _Recorded(
            task,
            instant,
            attempt=attempt,
            coalesced=coalesced,
            reason=reason,
            execution=reply.payload["execution"],
            duplicate=reply.payload["duplicate"],
        )

    async def _dispatch(
        self, task: CompiledTask, execution_id: str, instant: datetime, attempt: int
    ) -> None:
        await self._dispatch_all([(task, execution_id, instant, attempt)])

    async def _dispatch_all(
        self, dispatches: list[tuple[CompiledTask, str, datetime, int]]
    ) -> None:
        """Queue every dispatch, then wait until the broker holds them all."""
        confirmations = [
            self.bus.enqueue_nowait(
                dispatch_queue(task.task_id),
                self._dispatch_payload(task, execution_id, instant, attempt),
                message_id=work_id(execution_id),
            )
            for task, execution_id, instant, attempt in dispatches
        ]
        if not confirmations:
            return
        done, pending = await asyncio.wait(confirmations, timeout=STORE_TIMEOUT_S)
        for confirmed in done:
            confirmed.result()  # raises why the broker refused it
        if pending:
            raise AskTimeout(
                f"broker did not confirm {len(pending)} dispatches within {STORE_TIMEOUT_S}s"
            )
        self.counters["dispatched"] += len(confirmations)

    def _dispatch_payload(
        self, task: CompiledTask, execution_id: str, instant: datetime, attempt: int
    ) -> dict[str, Any]:
        return Dispatch(
            execution_id=execution_id,
            task_id=task.task_id,
            task_class=task.record.task_class,
            scheduled_at=instant,
            attempt=attempt,
            timeout_s=task.policies.timeout_s(self.settings),
            allow_overlap=task.policies.run.allow_overlap,
            config=task.record.config,
            owner=task.record.owner,
        ).payload()

    async def _record_missed(self, task: CompiledTask, plan: MisfirePlan) -> None:
        runs: list[dict[str, Any]] = [
            {
                "first_at": m.instant.isoformat(),
                "last_at": m.instant.isoformat(),
                "count": 1,
                "reason": m.reason,
            }
            for m in plan.missed
        ]
        if plan.unlisted is not None:
            gap = plan.unlisted
            runs.insert(
                0,
                {
                    "first_at": gap.first.isoformat(),
                    "last_at": gap.last.isoformat(),
                    "count": gap.count,
                    "reason": gap.reason,
                },
            )
        if not runs:
            return
        assert self.lease is not None
        for start in range(0, len(runs), 1000):
            await self._owed(
                "store.missed.record",
                {
                    "task_id": task.task_id,
                    "runs": runs[start : start + 1000],
                    "fence": self.lease.fence,
                },
            )
        self.counters["missed"] += sum(int(r["count"]) for r in runs)
        self.log.info("task %s: %d fires not run (%s)", task.task_id, len(runs), runs[-1]["reason"])
        await self._status_event(task.record.owner, task.task_id, "missed", runs=runs[-10:])

    # ------------------------------------------------------------ results and retries

    @on_work(RESULT_QUEUE, credit=100)
    async def on_result(self, delivery: Delivery) -> None:
        try:
            result = RunResult.read(delivery.envelope.payload)
        except InvalidValue as exc:
            await report_dropped(self, RESULT_QUEUE, delivery, exc)
            return  # acknowledged: a result that cannot be read would fail the same way again
        sender = delivery.envelope.sender
        if not self.owners.roles.has(EXECUTOR_ROLE, sender):
            reason = f"{sender!r} is not an executor (bus.roles.executor): its result is dropped"
            await report_dropped(self, RESULT_QUEUE, delivery, reason)
            return
        self.counters["succeeded" if result.success else "failed"] += 1
        task = self._tasks.get(result.task_id)
        if result.success or task is None:
            return
        stored = await self._stored_failure(result)
        if stored is None:
            reason = (
                f"no failed run {result.execution_id} of {result.task_id} at "
                f"{result.scheduled_at.isoformat()}, attempt {result.attempt}, in the store"
            )
            await report_dropped(self, RESULT_QUEUE, delivery, reason)
            return
        await self._after_failure(task, stored)

    async def _stored_failure(self, result: RunResult) -> RunResult | None:
        """The failure as the store has it, if ``result`` names a run that was recorded (so
        dispatched) for that task, instant and attempt, and ended failed; else None. A retry or
        a dead letter is decided from what the store holds, never from what a result says."""
        try:
            reply = await self._store("store.execution.get", {"execution_id": result.execution_id})
        except RemoteError as exc:
            if exc.code == "not_found":
                return None
            raise
        execution = reply.payload["execution"]
        failure = _failure_of(execution)
        if (
            execution["success"] is not False
            or failure.task_id != result.task_id
            or failure.scheduled_at != result.scheduled_at
            or failure.attempt != result.attempt
        ):
            return None
        return failure

    async def _after_failure(self, task: CompiledTask, result: RunResult) -> None:
        key = f"{task.task_id}@{result.scheduled_at.isoformat()}"
        decision = task.policies.retry.decide(result.attempt, result.error_type, key)
        if decision.retry:
            self._retry_at(
                task,
                result.scheduled_at,
                result.attempt + 1,
                decision.retry_at(result.completed_at),
            )
            await self._status_event(
                task.record.owner,
                task.task_id,
                "retry_scheduled",
                scheduled_at=result.scheduled_at.isoformat(),
                attempt=result.attempt + 1,
                reason=decision.reason,
            )
            return
        letter = DeadLetter(
            task_id=task.task_id,
            scheduled=result.scheduled_at,
            attempts=result.attempt,
            error_type=result.error_type[0],
            last_error=result.error_message,
            reason=decision.reason,
            failed_at=result.completed_at,
        )
        record = letter.payload()
        await self._owed(
            "store.dead_letter.add",
            {
                "task_id": letter.task_id,
                "scheduled_at": record["scheduled"],
                "attempts": letter.attempts,
                "error_type": letter.error_type,
                "last_error": letter.last_error,
                "reason": letter.reason,
                "failed_at": record["failed_at"],
            },
        )
        self.counters["dead"] += 1
        self.log.warning(
            "task %s fire %s given up: %s", task.task_id, record["scheduled"], letter.reason
        )
        await self.publish(owner_topic(DEAD_TOPIC, task.record.owner), record)

    def _retry_at(self, task: CompiledTask, instant: datetime, attempt: int, due: datetime) -> None:
        key = (task.task_id, instant, attempt)
        if key in self._retries:
            return
        delay = max(0.0, (due - self._clock.wall()).total_seconds())

        def fire() -> None:
            self._retries.pop(key, None)
            current = self._tasks.get(task.task_id)
            if current is not None:
                self._spawn(self._fire(current, instant, attempt=attempt, reason="retry"))

        self._retries[key] = self._clock.call_later(delay, fire)

    # ------------------------------------------------------------ talking to the store

    async def _store(self, topic: str, payload: Payload) -> Envelope:
        return await self.ask(topic, payload, STORE_TIMEOUT_S)

    async def _owed(self, topic: str, payload: Payload) -> Envelope:
        """A write a fire depends on: retried while the store is unreachable and the lease held;
        LeaseLost once the store refuses the fence or the lease could have expired.
        """
        assert self.lease is not None
        while True:
            try:
                return await self._store(topic, payload)
            except RemoteError as exc:
                if exc.code == "lease_lost":
                    raise LeaseLost(exc.reason) from exc
                if exc.code in _PASSED_ON:
                    raise
                problem: BusError = exc
            except (TimeoutError, BusError) as exc:
                problem = exc  # type: ignore[assignment]
            if not self.lease.held:
                raise LeaseLost(f"lease expired while {topic} failed: {problem}")
            self.log.warning("%s failed (%s); trying again", topic, problem)
            await asyncio.sleep(RETRY_PAUSE_S)

    async def _status_event(self, owner: str, task_id: str, state: str, **fields: Any) -> None:
        """On the owner's status topic: the owner and the admins receive it."""
        payload = {"task_id": task_id, "state": state, **fields}
        await self.publish(owner_topic(STATUS_TOPIC, owner), payload)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Background work whose failure (a lost lease) kills the actor."""
        task = asyncio.ensure_future(work)
        self._background.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._background.discard(finished)
            if finished.cancelled():
                return
            error = finished.exception()
            if error is not None and self._fatal is not None and not self._fatal.done():
                self._fatal.set_exception(error)

        task.add_done_callback(done)


def _failure_of(execution: Mapping[str, Any]) -> RunResult:
    """A failed execution as the store sent it (``store.execution.*``), as a RunResult."""
    result = execution.get("result") or {}
    names = result.get("error_type") if isinstance(result, dict) else None
    completed = execution.get("completed_at") or execution["started_at"]
    return RunResult(
        execution_id=execution["execution_id"],
        task_id=execution["task_id"],
        scheduled_at=payloads.instant("scheduled_at", execution["scheduled_at"]),
        attempt=int(execution["retry_count"]) + 1,
        success=False,
        completed_at=payloads.instant("completed_at", completed),
        error_type=tuple(names) if isinstance(names, list) and names else ("Exception",),
        error_message=execution.get("error_message") or "",
    )


def _put_payload(spec: TaskSpec) -> dict[str, Any]:
    return {k: v for k, v in plain(spec).items() if v is not None and k != "next_run"}


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat()
