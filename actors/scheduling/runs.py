"""Serving ``scheduler.run.signal|cancel|pause|resume|list`` and a start's key: controlling the
runs of a task, its owner's and the admins' (``RunRequests``), each request's reader beside.

``run`` names a run by its key (``<task id>@<µs>``, ``store.records.run_key``) or by the
execution id of any of its attempts. A run is known if the store holds its row or an execution
of its fire; its task must exist, and the requester must own it (or be an admin), before
anything is written. A run the store holds no row of is final if its latest attempt is: a
signal or a control of it is refused ``conflict`` as one of a final row is.

After a signal, a run waiting for that name is woken; after a cancel its wake and its waiting
retry are dropped; a pause holds its wake, a resume releases it (a due run wakes at once). Each
is then pushed to the executors of the run's category (``RunPush``): the live attempt, if any,
takes it.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, NamedTuple

from actors.scheduling.owners import Owners
from actors.scheduling.protocol import RunPush, deliver_topic
from actors.scheduling.requests import task_id
from actors.scheduling.retries import Retries
from actors.scheduling.sleepers import Sleepers
from actors.storing import fields
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from actors.storing.wire import plain
from bus.envelope import Payload
from scheduler import Clock
from store import values
from store.errors import Conflict, InvalidValue, NotFound
from store.records import (
    FINAL_RUN_STATES,
    RUN_STATES,
    ExecutionRecord,
    NewSignal,
    RunRecord,
    run_key,
    signal_name,
    start_key_text,
)
from store.salvage import PartialPage

CONTROLS = ("cancel", "pause", "resume")  # signal names that act as the control asks
SCAN_PAGE = 200  # executions read per request when looking for a run without a row
SCAN_PAGES = 25  # ... and at most this many pages (the latest 5,000 executions of its task)

Publish = Callable[[str, Payload], Awaitable[None]]


# ------------------------------------------------------------------ readers


def run_name(name: str, value: Any) -> str:
    """A run key ``<task id>@<µs>`` or an execution id (a UUID)."""
    checked = fields.identifier(name, value)
    task, at, micros = checked.rpartition("@")
    if at:
        task_id(name, task)
        if not micros.isdigit():
            raise InvalidValue(name, f"{checked!r}: a run key ends with @<microseconds>")
        return checked
    try:
        uuid.UUID(checked)
    except ValueError as error:
        raise InvalidValue(
            name, f"{checked!r}: expected a run key (<task id>@<µs>) or an execution id"
        ) from error
    return checked


def run_state(name: str, value: Any) -> str:
    checked = fields.text(name, value)
    if checked not in RUN_STATES:
        raise InvalidValue(name, f"{checked!r}: expected one of {', '.join(RUN_STATES)}")
    return checked


class SignalAsk(NamedTuple):
    run: str
    name: str
    payload: Any


class ControlAsk(NamedTuple):
    run: str
    reason: str


class RunPage(NamedTuple):
    task_id: str | None
    state: str | None
    after: str | None
    limit: int


class TriggerAsk(NamedTuple):
    task_id: str
    key: str | None


def _anything(name: str, value: Any) -> Any:
    return value


@strict
def read_signal(request: Fields) -> SignalAsk:
    return SignalAsk(
        request.required("run", run_name),
        request.required("name", signal_name),
        request.optional("payload", _anything, None),
    )


@strict
def read_cancel(request: Fields) -> ControlAsk:
    return ControlAsk(
        request.required("run", run_name), request.optional("reason", fields.message, "")
    )


@strict
def read_run(request: Fields) -> ControlAsk:
    return ControlAsk(request.required("run", run_name), "")


@strict
def read_run_page(request: Fields) -> RunPage:
    return RunPage(
        request.optional("task_id", task_id, None),
        request.optional("state", run_state, None),
        request.optional("after", fields.text, None),
        request.optional("limit", fields.positive, 50),
    )


@strict
def read_trigger(request: Fields) -> TriggerAsk:
    return TriggerAsk(
        request.required("task_id", task_id), request.optional("key", start_key_text, None)
    )


# ------------------------------------------------------------------ handlers


class Run(NamedTuple):
    """A run resolved: its key, task and instant, and its row (None: the store keeps none)."""

    key: str
    task_id: str
    scheduled_at: datetime
    row: RunRecord | None


class RunRequests:
    """What each run request does; ``sender`` is the requester's authenticated identity."""

    def __init__(
        self,
        *,
        store: StoreClient,
        owners: Owners,
        sleepers: Sleepers,
        retries: Retries,
        publish: Publish,
        clock: Clock,
    ) -> None:
        self._store = store
        self._owners = owners
        self._sleepers = sleepers
        self._retries = retries
        self._publish = publish
        self._clock = clock

    async def signal(self, sender: str, ask: SignalAsk) -> Payload:
        if ask.name in CONTROLS:
            reason = ask.payload if isinstance(ask.payload, str) else ""
            return await self.control(sender, ControlAsk(ask.run, reason), ask.name)
        run = await self._controllable(sender, ask.run, "signal")
        new = NewSignal(
            run_key=run.key,
            name=ask.name,
            payload=ask.payload,
            sender=sender,
            sent_at=self._clock.wall(),
        )
        signal, row = await self._store.put_signal(
            new, task_id=run.task_id, scheduled_at=run.scheduled_at
        )
        if row.state == "waiting" and row.waiting == ask.name and not row.paused:
            woken = await self._store.wake_run(run.key, now=self._clock.wall())
            if woken is not None:
                self._sleepers.drop(run.key)
                await self._sleepers.fire(woken)
                row = woken
        push = RunPush(
            run_key=run.key,
            kind="signal",
            seq=signal.seq,
            name=signal.name,
            value=signal.payload,
            sender=signal.sender,
            sent_at=signal.sent_at,
        )
        await self._publish(deliver_topic(run.task_id), push.payload())
        return {"run": plain(row), "seq": signal.seq}

    async def control(self, sender: str, ask: ControlAsk, action: str) -> Payload:
        """``cancel``, ``pause`` or ``resume`` the run."""
        run = await self._controllable(sender, ask.run, action)
        if action == "cancel":
            reason = ask.reason or f"cancelled by {sender}"
        else:
            reason = f"{action}d by {sender}"
        row, _before = await self._store.control_run(
            run.key,
            task_id=run.task_id,
            scheduled_at=run.scheduled_at,
            action=action,
            reason=reason,
            now=self._clock.wall(),
        )
        if action == "cancel":
            self._sleepers.drop(run.key)
            self._retries.cancel_run(run.task_id, run.scheduled_at)
        elif action == "pause":
            self._sleepers.drop(run.key)  # held until resumed
        elif row.suspended:
            woken = await self._store.wake_run(run.key, now=self._clock.wall())
            if woken is None:
                self._sleepers.follow(row)
            else:
                self._sleepers.drop(run.key)
                await self._sleepers.fire(woken)
                row = woken
        push = RunPush(run_key=run.key, kind=action, reason=reason if action == "cancel" else "")
        await self._publish(deliver_topic(run.task_id), push.payload())
        return {"run": plain(row)}

    async def list_runs(self, sender: str, page: RunPage) -> Payload:
        owner = None if self._owners.is_admin(sender) else sender  # others see their own
        found = await self._store.list_runs(
            task_id=page.task_id,
            states=() if page.state is None else (page.state,),
            after=page.after,
            limit=page.limit,
            owner=owner,
        )
        reply: Payload = {"runs": [plain(r) for r in found.items], "next_cursor": found.next_cursor}
        if isinstance(found, PartialPage) and found.unreadable:
            reply["unreadable"] = list(found.unreadable)
        return reply

    # ------------------------------------------------------------ resolving

    async def _controllable(self, sender: str, name: str, action: str) -> Run:
        """The run ``name``, if ``sender`` may ``action`` it and it is not final."""
        run = await self._resolve(name)
        try:
            task = await self._store.get_task(run.task_id)
        except NotFound as error:
            raise NotFound(f"run {name!r} not found: its task {run.task_id!r} is gone") from error
        self._owners.check(sender, task.owner, run.task_id, f"{action} a run of")
        if run.row is not None:
            state = run.row.state  # the store refuses a final row itself
        else:
            state = await self._state_without_row(run, name)
        if state in FINAL_RUN_STATES and not (action == "cancel" and state == "cancelled"):
            raise Conflict(f"run {run.key} is {state}")
        return run

    async def _resolve(self, name: str) -> Run:
        """The run ``name`` names (NotFound if the store knows none)."""
        if "@" in name:
            task, _, micros = name.rpartition("@")
            instant = values.from_us(int(micros))
        else:
            try:
                execution = await self._store.get_execution(name)
            except NotFound as error:
                raise NotFound(f"run {name!r} not found") from error
            task, instant = execution.task_id, execution.scheduled_at
        key = run_key(task, instant)
        try:
            row: RunRecord | None = await self._store.get_run(key)
        except NotFound:
            row = None
            if "@" in name and await self._latest_attempt(task, instant) is None:
                raise NotFound(f"run {name!r} not found") from None
        return Run(key, task, instant, row)

    async def _state_without_row(self, run: Run, name: str) -> str:
        """The state of a run the store keeps no row of, by its latest attempt: a success ended
        it; a failure ended it unless a retry waits for its time."""
        latest = await self._latest_attempt(run.task_id, run.scheduled_at)
        if latest is None or latest.success is None:
            return "running"
        if latest.success:
            return "succeeded"
        pending = self._retries.pending(run.task_id)
        return "running" if any(at == run.scheduled_at for at, _ in pending) else "failed"

    async def _latest_attempt(self, task: str, instant: datetime) -> ExecutionRecord | None:
        """The fire's latest attempt, from its task's history (latest start first; an attempt
        starts at or after its instant): None if there is none among the latest ones."""
        before: str | None = None
        for _ in range(SCAN_PAGES):
            try:
                page = await self._store.history(task, before=before, limit=SCAN_PAGE)
            except NotFound:
                return None
            for execution in page.items:
                if execution.scheduled_at == instant:
                    return execution
            if page.next_cursor is None or not page.items:
                return None
            if page.items[-1].started_at < instant:
                return None
            before = page.next_cursor
        return None
