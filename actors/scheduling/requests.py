"""Serving ``scheduler.task.*``, ``scheduler.run.get`` and ``scheduler.stats``: each request's
reader (declared beside its route on ``SchedulerActor``) and what its handler does
(``TaskRequests``). The other run asks are ``actors.scheduling.runs``'.

A reader checks the request's fields before anything is asked of the store: their types, the task
id (``<category>.<name>``), no unknown field. A create or an update is then compiled once (its
schedule in its zone under its DST rules, its three policy maps), and stored in one write that
carries its next run; the fire loop is woken. A create, and an update of the class or the
config, is first checked against the classes the category's executors announced (``catalogue``):
the reply carries ``warnings`` when it could not be. A handler raises what says why it refuses
(InvalidValue, NotFound, TaskExists, Conflict, TaskPermissionError, or the owners' ``denied``):
the actor's ``refusal`` turns it into a code.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from actors.scheduling import definitions, dependencies
from actors.scheduling.catalogue import Catalogue
from actors.scheduling.definitions import Compiled, CompiledTask, compile_definition
from actors.scheduling.events import Events
from actors.scheduling.firing import Firing
from actors.scheduling.lease import LeaseKeeper
from actors.scheduling.owners import Owners
from actors.scheduling.retries import Retries
from actors.scheduling.roster import Roster
from actors.storing import fields
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from actors.storing.wire import plain
from bus.envelope import Payload
from config.errors import ConfigError
from config.sections import SchedulerSettings, check_task_id
from scheduler import Clock
from store.errors import Conflict, InvalidValue, LeaseLost, NotFound
from store.records import Page, Recorded, TaskRecord, TaskSpec, run_key
from store.salvage import PartialPage
from tasks.permissions import TaskPermissions


class TaskExists(Conflict):
    """A create of a task id already stored (answered ``exists``)."""


def created_over(task_id: str, error: Conflict) -> Conflict:
    """What a create's write refused at version 0 means: the id is taken (TaskExists); a lost
    lease stays what it is."""
    if isinstance(error, LeaseLost):
        return error
    return TaskExists(f"task {task_id!r} already exists; use task update")


class Prepared(NamedTuple):
    """A definition checked and compiled, ready for its one write: the spec to store (with its
    next run), what it compiles to, the version its write expects and the catalogue's
    warnings (``TaskRequests.prepare``; ``settle`` once it is written)."""

    spec: TaskSpec
    compiled: Compiled
    expected_version: int
    warnings: list[str]


# ------------------------------------------------------------------ readers


def task_id(name: str, value: Any) -> str:
    """A task id: ``<category>.<name>`` (``config.sections.check_task_id``)."""
    checked = fields.identifier(name, value)
    try:
        check_task_id(checked)
    except ConfigError as error:
        raise InvalidValue(name, f"{checked!r}: expected {error.expected}") from error
    return checked


class NewTask(NamedTuple):
    """A ``scheduler.task.create``: a definition, its owner the requester (``timezone`` None:
    ``[scheduler] default_timezone``)."""

    task_id: str
    task_class: str
    schedule: str
    timezone: str | None
    config: dict[str, Any]
    enabled: bool
    misfire_policy: dict[str, Any] | None
    retry_policy: dict[str, Any] | None
    run_policy: dict[str, Any] | None


class Update(NamedTuple):
    """A ``scheduler.task.update``: the fields it sets (a policy map None clears it)."""

    task_id: str
    expected_version: int | None
    changes: dict[str, Any]


class TaskPage(NamedTuple):
    after: str | None
    limit: int
    with_status: bool


class TaskPageOf(NamedTuple):
    """A page of one task's history or missed runs, latest first."""

    task_id: str
    before: str | None
    limit: int


@strict
def read_create(request: Fields) -> NewTask:
    return NewTask(
        task_id=request.required("task_id", task_id),
        task_class=request.required("task_class", fields.text),
        schedule=request.required("schedule", fields.text),
        timezone=request.optional("timezone", fields.identifier, None),
        config=request.optional("config", fields.mapping, {}),
        enabled=request.optional("enabled", fields.flag, True),
        misfire_policy=request.optional("misfire_policy", fields.mapping, None),
        retry_policy=request.optional("retry_policy", fields.mapping, None),
        run_policy=request.optional("run_policy", fields.mapping, None),
    )


_CHANGES = {
    "task_class": fields.text,
    "schedule": fields.text,
    "timezone": fields.identifier,
    "config": fields.mapping,
    "enabled": fields.flag,
}


def read_update(payload: Mapping[str, Any]) -> Update:
    request = Fields(payload)
    ref = request.required("task_id", task_id)
    expected = request.optional("expected_version", fields.positive, None)
    changes: dict[str, Any] = {}
    for name, parse in _CHANGES.items():
        value = request.optional(name, parse, None)
        if value is not None:
            changes[name] = value
    for name in definitions.POLICY_FIELDS:
        policy = request.optional(name, fields.mapping, None)
        if name in payload:
            changes[name] = policy  # nil clears it
    request.done()
    if not changes:
        raise InvalidValue(
            "task_id", f"an update names at least one of {', '.join(definitions.EDITABLE)}"
        )
    return Update(ref, expected, changes)


@strict
def read_task_ref(request: Fields) -> str:
    return request.required("task_id", task_id)


@strict
def read_task_page(request: Fields) -> TaskPage:
    return TaskPage(
        request.optional("after", fields.text, None),
        request.optional("limit", fields.positive, 100),
        request.optional("with_status", fields.flag, False),
    )


@strict
def read_task_page_of(request: Fields) -> TaskPageOf:
    return TaskPageOf(
        request.required("task_id", task_id),
        request.optional("before", fields.text, None),
        request.optional("limit", fields.positive, 50),
    )


def run_ref(name: str, value: Any) -> str:
    """An execution id: a UUID in its text form."""
    checked = fields.identifier(name, value)
    try:
        uuid.UUID(checked)
    except ValueError as error:
        raise InvalidValue(name, f"{checked!r}: expected a run's execution id (a UUID)") from error
    return checked


@strict
def read_run_ref(request: Fields) -> str:
    return request.required("execution_id", run_ref)


@strict
def read_nothing(request: Fields) -> None:
    return None


# ------------------------------------------------------------------ handlers


class TaskRequests:
    """What each request does; ``sender`` is the requester's authenticated identity."""

    def __init__(
        self,
        *,
        store: StoreClient,
        owners: Owners,
        permissions: TaskPermissions,
        roster: Roster,
        firing: Firing,
        retries: Retries,
        lease: LeaseKeeper,
        events: Events,
        counters: Counter[str],
        clock: Clock,
        settings: SchedulerSettings,
        catalogue: Catalogue,
    ) -> None:
        self._store = store
        self._catalogue = catalogue
        self._owners = owners
        self._permissions = permissions
        self._roster = roster
        self._firing = firing
        self._retries = retries
        self._lease = lease
        self._events = events
        self._counters = counters
        self._clock = clock
        self._settings = settings
        # more checks of a change of a stored task (the agents' rules: actors.scheduling.agents)
        self.check_change: Callable[[TaskRecord, Mapping[str, Any]], None] | None = None

    # ------------------------------------------------------------ definitions

    def prepare_create(self, sender: str, new: NewTask) -> Prepared:
        """A new task of ``sender``'s checked and compiled, ready for its write at version 0."""
        compiled = compile_definition(new, self._settings)
        self._permissions.check_creatable_over_bus(new.task_id)
        warnings = self._catalogue.check(new.task_id, new.task_class, new.config)
        now = self._clock.wall()
        accounted, next_run = self._run_state(new, compiled, stored=None, now=now)
        spec = TaskSpec(  # with its run state at once (``prepare`` would build it twice)
            task_id=new.task_id,
            task_class=new.task_class,
            schedule=new.schedule,
            config=new.config,
            enabled=new.enabled,
            timezone=new.timezone or self._settings.default_timezone,
            misfire_policy=new.misfire_policy,
            retry_policy=new.retry_policy,
            run_policy=new.run_policy,
            owner=sender,
            accounted_through=accounted,
            next_run=next_run,
        )
        definitions.check_fires_after(compiled.schedule, spec.schedule, now)  # it fires anew
        return Prepared(spec, compiled, 0, warnings)

    async def create(self, sender: str, new: NewTask) -> Payload:
        prepared = self.prepare_create(sender, new)
        await self.check_depends_on(sender, prepared)
        try:
            written = await self._store.put_task(prepared.spec, expected_version=0)
        except Conflict as error:
            raise created_over(new.task_id, error) from error
        return await self.settle(prepared, written)

    async def check_depends_on(
        self, sender: str, prepared: Prepared, stored: TaskRecord | None = None
    ) -> None:
        """The dependency rules (``dependencies.check_definition``) for a create, or for an
        update of ``stored`` that changes its ``depends_on``."""
        depends_on = prepared.compiled.policies.run.depends_on
        if stored is not None and list(depends_on) == dependencies.stored_depends_on(stored):
            return
        await dependencies.check_definition(
            self._store, self._owners, sender, prepared.spec.task_id, depends_on
        )

    def prepare_update(
        self, stored: TaskRecord, changes: Mapping[str, Any], expected_version: int | None = None
    ) -> Prepared:
        """A change of ``stored`` (the requester may change it) checked and compiled."""
        if "task_class" in changes:
            self._permissions.check_class_changeable(stored.task_id)
        if self.check_change is not None:
            self.check_change(stored, changes)
        spec = replace(definitions.spec_of(stored), **changes)
        compiled = compile_definition(spec, self._settings)
        warnings: list[str] = []
        if "task_class" in changes or "config" in changes:
            warnings = self._catalogue.check(spec.task_id, spec.task_class, spec.config)
        expected = expected_version or stored.version
        return self.prepare(
            spec, compiled, stored=stored, expected_version=expected, warnings=warnings
        )

    async def update(self, sender: str, update: Update) -> Payload:
        stored = await self._owned(sender, update.task_id, "update")
        prepared = self.prepare_update(stored, update.changes, update.expected_version)
        await self.check_depends_on(sender, prepared, stored)
        written = await self._store.put_task(
            prepared.spec, expected_version=prepared.expected_version
        )
        return await self.settle(prepared, written)

    async def set_enabled(self, sender: str, task_id: str, *, enabled: bool) -> Payload:
        stored = await self._owned(sender, task_id, "enable" if enabled else "disable")
        spec = replace(definitions.spec_of(stored), enabled=enabled)
        if enabled and not stored.enabled and not stored.paused:
            spec = replace(spec, note=None)  # why it was disabled (reached max_runs N) is past
        compiled = compile_definition(spec, self._settings)
        return await self._write(spec, compiled, stored=stored, expected_version=stored.version)

    async def delete(self, sender: str, task_id: str) -> Payload:
        self._permissions.check_deletable(task_id)
        stored = await self._owned(sender, task_id, "delete")
        await dependencies.check_deletable(self._store, task_id)
        deleted = await self._store.delete_task(task_id)
        self._forget(task_id)
        if not deleted:
            raise NotFound(f"task {task_id!r} not found")
        await self._events.status(stored.owner, task_id, "deleted")
        return {"deleted": task_id}

    async def _write(
        self,
        spec: TaskSpec,
        compiled: Compiled,
        *,
        stored: TaskRecord | None,
        expected_version: int,
    ) -> Payload:
        """Store a new or changed definition with its next run, in one write, and schedule it."""
        prepared = self.prepare(spec, compiled, stored=stored, expected_version=expected_version)
        written = await self._store.put_task(prepared.spec, expected_version=expected_version)
        return await self.settle(prepared, written)

    def prepare(
        self,
        spec: TaskSpec,
        compiled: Compiled,
        *,
        stored: TaskRecord | None,
        expected_version: int,
        warnings: Sequence[str] = (),
    ) -> Prepared:
        """A new or changed definition ready for its write: ``spec`` with its next run."""
        now = self._clock.wall()
        if stored is None:
            definitions.check_fires_after(compiled.schedule, spec.schedule, now)
        accounted, next_run = self._run_state(spec, compiled, stored=stored, now=now)
        written = replace(spec, accounted_through=accounted, next_run=next_run)
        return Prepared(written, compiled, expected_version, list(warnings))

    def _run_state(
        self,
        spec: TaskSpec | NewTask,
        compiled: Compiled,
        *,
        stored: TaskRecord | None,
        now: datetime,
    ) -> tuple[datetime | None, datetime | None]:
        """What a write of ``spec`` over ``stored`` (None: a new task) stores of its run state:
        ``(accounted_through, next_run)``, None keeping the stored value.

        A new task, a changed schedule and an enabled task owe the fires after now, not those
        before (which were not theirs to run); any other change keeps what the task owes. Such a
        change must have a fire after now (checked here); so must a new task (its caller checks
        it, once the task's spec is built).
        """
        if stored is None:  # a new task fires anew
            if not spec.enabled:
                return now, None
            return now, self._roster.upcoming(spec.task_id, compiled.schedule, now)
        assert isinstance(spec, TaskSpec)  # a change of a stored task is a spec
        accounted = None
        if definitions.fires_anew(stored, spec):
            definitions.check_fires_after(compiled.schedule, spec.schedule, now)
            accounted = now
        next_run = None  # None keeps the stored one: an unchanged definition is a duplicate
        if spec.enabled and spec != definitions.spec_of(stored):
            last = definitions.accounted_through(stored) if accounted is None else accounted
            next_run = self._roster.upcoming(spec.task_id, compiled.schedule, last)
        return accounted, next_run

    async def settle(self, prepared: Prepared, written: Recorded[TaskRecord]) -> Payload:
        """Schedule a definition its write stored; reply with it (and its warnings)."""
        record = written.record
        compiled = prepared.compiled
        reply = await self._schedule(CompiledTask(record, compiled.schedule, compiled.policies))
        if not written.duplicate:
            await self._events.status(
                record.owner, record.task_id, "defined", version=record.version
            )
        return _warned(reply, prepared.warnings)

    async def _schedule(self, task: CompiledTask) -> Payload:
        """Put a stored task in the roster (or take it out if disabled); reply with it, its next
        run stored if the write did not already carry it (a disabled task, a reset)."""
        record = task.record
        self._roster.note_meaning(task)
        next_fire = None
        if record.enabled and not record.paused:  # a paused task does not fire
            next_fire = self._roster.put(task)
        else:
            self._forget(record.task_id)
        if next_fire != record.next_run:
            record = await self._store.mark_run(record.task_id, next_run=next_fire)
        return {"task": plain(record)}

    def _forget(self, task_id: str) -> None:
        self._roster.remove(task_id)
        self._retries.cancel(task_id)

    # ------------------------------------------------------------ running

    async def trigger(self, sender: str, task_id: str, key: str | None = None) -> Payload:
        """Run now, outside the schedule: a fire whose instant is now (its own run). With a
        start ``key``, one run per key and task: asked again, the reply is the run started first
        (``duplicate``), and nothing new runs."""
        task = self._roster.get(task_id)
        if task is None:  # not found, or known but disabled
            task = definitions.compile_task(await self._store.get_task(task_id), self._settings)
        self._owners.check(sender, task.record.owner, task_id, "trigger")
        instant = self._clock.wall()
        fired = await self._firing.start(task, instant, attempt=1, reason="trigger", start_key=key)
        duplicate = key is not None and fired.stored.duplicate
        if duplicate:
            instant = (await self._store.get_execution(fired.execution_id)).scheduled_at
        return {
            "task_id": task_id,
            "execution_id": fired.execution_id,
            "run": run_key(task_id, instant),
            "duplicate": duplicate,
        }

    async def reset(self, sender: str, task_id: str) -> Payload:
        """Forget the last run: the next fire is the first one after now, nothing is missed."""
        await self._owned(sender, task_id, "reset")
        record = await self._store.reset_task(task_id, accounted_through=self._clock.wall())
        self._roster.reset(task_id)
        return await self._schedule(definitions.compile_task(record, self._settings))

    # ------------------------------------------------------------ reading

    async def status(self, sender: str, task_id: str) -> Payload:
        record = await self._owned(sender, task_id, "read")
        status = await self._store.task_status(task_id)
        return {
            "status": plain(status),
            "next_fire": _iso(self._roster.next_fire(task_id)),
            "schedule_note": self._meaning_note(record),
            "warnings": self._class_warnings(record),
            "pending_retries": [
                {"scheduled_at": instant.isoformat(), "attempt": attempt}
                for instant, attempt in self._retries.pending(task_id)
            ],
        }

    def _class_warnings(self, record: TaskRecord) -> list[str]:
        """What the catalogue says of the stored class and options now: nothing when they check,
        why they could not be checked, or why they would be refused (the executors that run the
        category changed since the task was written)."""
        try:
            return self._catalogue.check(record.task_id, record.task_class, record.config)
        except InvalidValue as exc:
            return [str(exc)]

    def _meaning_note(self, record: TaskRecord) -> str | None:
        task = self._roster.get(record.task_id)
        if task is None or task.record.version != record.version:
            try:
                task = definitions.compile_task(record, self._settings)
            except InvalidValue:
                return None  # a stored task that does not compile here says so on its own
        return definitions.meaning_note(task, self._clock.wall())

    async def get(self, sender: str, task_id: str) -> Payload:
        return {"task": plain(await self._owned(sender, task_id, "read"))}

    async def list_tasks(self, sender: str, page: TaskPage) -> Payload:
        owner = None if self._owners.is_admin(sender) else sender  # others see their own tasks
        found = await self._store.list_tasks(after=page.after, limit=page.limit, owner=owner)
        tasks = [plain(task) for task in found.items]
        if page.with_status:
            statuses = await asyncio.gather(
                *(self._store.task_status(task.task_id) for task in found.items)
            )
            for task, status in zip(tasks, statuses, strict=True):
                task["next_fire"] = _iso(self._roster.next_fire(task["task_id"]))
                task["status"] = plain(status)
        return _page("tasks", tasks, found)

    async def history(self, sender: str, page: TaskPageOf) -> Payload:
        """A task's executions, latest first, in pages."""
        await self._owned(sender, page.task_id, "read")
        found = await self._store.history(page.task_id, before=page.before, limit=page.limit)
        return _page("executions", [plain(e) for e in found.items], found)

    async def missed(self, sender: str, page: TaskPageOf) -> Payload:
        """A task's fires that did not run, with their reasons, latest first, in pages."""
        await self._owned(sender, page.task_id, "read")
        found = await self._store.missed_runs(page.task_id, before=page.before, limit=page.limit)
        return _page("missed", [plain(m) for m in found.items], found)

    async def get_run(self, sender: str, execution_id: str) -> Payload:
        """One execution with its logs, and the steps of its fire in the order they were stored
        (without their results: a step's result may be large)."""
        try:
            execution = await self._store.get_execution(execution_id)
        except NotFound as error:
            raise NotFound(f"run {execution_id!r} not found") from error
        await self._owned(sender, execution.task_id, "read")
        steps = await self._store.run_steps(run_key(execution.task_id, execution.scheduled_at))
        return {
            "run": plain(execution),
            "steps": [
                {
                    "name": step.name,
                    "status": step.status,
                    "attempts": step.attempts,
                    "started_at": step.started_at.isoformat(),
                    "finished_at": step.finished_at.isoformat(),
                    "size": step.size_bytes,
                    "error": step.error,
                }
                for step in steps
            ],
        }

    async def stats(self) -> Payload:
        report = await self._store.stats(per_task=False)
        engine = self._roster.engine
        upcoming = engine.next_due()
        return {
            "leader": self._lease.holder,
            "lease_token": self._lease.token,
            # Every stored task, enabled or not, as `task list` shows them; then the enabled
            # ones this leader fires and those with a next fire.
            "tasks": report.stored_tasks,
            "enabled": len(self._roster),
            "scheduled": len(engine),
            "next_due": None
            if upcoming is None
            else {"task_id": upcoming[0], "at": upcoming[1].isoformat()},
            "pending_retries": len(self._retries),
            "counters": dict(self._counters),
            "runs": plain(report.overall),
        }

    async def _owned(self, sender: str, task_id: str, action: str) -> TaskRecord:
        """The stored task, if ``sender`` may ``action`` it; NotFound, else ``denied``."""
        stored = await self._store.get_task(task_id)
        self._owners.check(sender, stored.owner, task_id, action)
        return stored


def _warned(reply: Payload, warnings: list[str]) -> Payload:
    """The reply, with ``warnings`` if there are any."""
    return reply | {"warnings": warnings} if warnings else reply


def _page(key: str, items: Sequence[dict[str, Any]], page: Page[Any]) -> Payload:
    """A page as the store sent it: its items, ``next_cursor``, and ``unreadable`` if any."""
    reply: Payload = {key: list(items), "next_cursor": page.next_cursor}
    if isinstance(page, PartialPage) and page.unreadable:
        reply["unreadable"] = list(page.unreadable)
    return reply


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat()
