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

import logging
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
    TaskRecord,
    run_key,
    signal_name,
    start_key_text,
)
from store.salvage import PartialPage
from tasks.children import is_reserved_signal

CONTROLS = ("cancel", "pause", "resume")  # signal names that act as the control asks
CHILD_SENDER = "scheduler"  # who sends a parent its child's end (``child:<key>``)
MAX_CASCADE = 10  # levels of children a cancel reaches

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


def sent_signal_name(field: str, value: object) -> str:
    """A signal name a client may send: not an internal one (``child:*``, which only the
    scheduler puts into a parent's inbox when a child run ends: a client could fake its end;
    ``update:*``, which only an executor puts there once an update's validator accepted it)."""
    name = signal_name(field, value)
    if is_reserved_signal(name):
        raise InvalidValue(
            field, f"{name!r} is an internal signal name (child:*, update:*); send another"
        )
    return name


@strict
def read_signal(request: Fields) -> SignalAsk:
    return SignalAsk(
        request.required("run", run_name),
        request.required("name", sent_signal_name),
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
        log: logging.Logger | None = None,
    ) -> None:
        self._log = log or logging.getLogger("taskbus.scheduler.runs")
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
        row, seq = await self.deliver(run, ask.name, ask.payload, sender)
        return {"run": plain(row), "seq": seq}

    async def deliver(
        self, run: Run, name: str, payload: Any, sender: str
    ) -> tuple[RunRecord, int]:
        """Put the signal in the run's inbox, wake the run if it waits for ``name``, push it to
        the live attempt; the row after and the signal's seq (Conflict if the run is final)."""
        new = NewSignal(
            run_key=run.key, name=name, payload=payload, sender=sender, sent_at=self._clock.wall()
        )
        signal, row = await self._store.put_signal(
            new, task_id=run.task_id, scheduled_at=run.scheduled_at
        )
        if row.state == "waiting" and row.waiting == name and not row.paused:
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
        return row, signal.seq

    async def control(self, sender: str, ask: ControlAsk, action: str) -> Payload:
        """``cancel``, ``pause`` or ``resume`` the run."""
        run = await self._controllable(sender, ask.run, action)
        if action == "cancel":
            reason = ask.reason or f"cancelled by {sender}"
        else:
            reason = f"{action}d by {sender}"
        row, before = await self._store.control_run(
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
        if action == "cancel" and before not in FINAL_RUN_STATES:
            await self.child_ended(row, "cancelled", None, reason)
            await self._cascade(run.key, f"its parent run {run.key} was cancelled")
        return {"run": plain(row)}

    # ------------------------------------------------------------ child runs

    async def _cascade(self, parent_key: str, reason: str) -> None:
        """Cancel the children of a cancelled run whose ``on_parent_cancel`` is ``cancel``,
        theirs in turn (MAX_CASCADE levels deep at most); ``abandon`` ones run on."""
        parents = [parent_key]
        for _ in range(MAX_CASCADE):
            cancelled: list[str] = []
            for key in parents:
                for child in await self._store.run_children(key):
                    if child.on_parent_cancel != "cancel" or child.state in FINAL_RUN_STATES:
                        continue
                    if await self._cancel_child(child, reason):
                        cancelled.append(child.run_key)
            if not cancelled:
                return
            parents = cancelled

    async def _cancel_child(self, child: RunRecord, reason: str) -> bool:
        try:
            _row, before = await self._store.control_run(
                child.run_key,
                task_id=child.task_id,
                scheduled_at=child.scheduled_at,
                action="cancel",
                reason=reason,
                now=self._clock.wall(),
            )
        except Conflict:  # it ended meanwhile
            return False
        self._sleepers.drop(child.run_key)
        self._retries.cancel_run(child.task_id, child.scheduled_at)
        push = RunPush(run_key=child.run_key, kind="cancel", reason=reason)
        await self._publish(deliver_topic(child.task_id), push.payload())
        return before not in FINAL_RUN_STATES

    async def child_succeeded(
        self, task_id: str, scheduled_at: datetime, execution_id: str
    ) -> None:
        """A child run's attempt succeeded (and did not suspend): tell its parent, with the
        result map its execution stored."""
        try:
            row = await self._store.get_run(run_key(task_id, scheduled_at))
        except NotFound:
            return  # not a spawned run (a child task triggered by hand)
        try:
            execution = await self._store.get_execution(execution_id)
        except NotFound:
            result: dict[str, Any] | None = None
        else:
            result = dict(execution.result or {})
        await self.child_ended(row, "succeeded", result, None)

    async def child_given_up(self, task_id: str, scheduled_at: datetime, error: str) -> None:
        """A child run's fire was given up: tell its parent it failed."""
        try:
            row = await self._store.get_run(run_key(task_id, scheduled_at))
        except NotFound:
            return
        await self.child_ended(row, "failed", None, error)

    async def child_ended(
        self, row: RunRecord, state: str, result: dict[str, Any] | None, error: str | None
    ) -> None:
        """Put ``child:<key>`` in the parent's inbox (sender ``scheduler``) and wake the parent
        if it waits for it; nothing if ``row`` is no spawned run or its parent ended."""
        if row.parent_key is None or row.spawn_key is None:
            return
        task, _, micros = row.parent_key.rpartition("@")
        parent = Run(row.parent_key, task, values.from_us(int(micros)), None)
        payload = {"state": state, "result": result, "error": error}
        try:
            await self.deliver(parent, f"child:{row.spawn_key}", payload, CHILD_SENDER)
        except (Conflict, NotFound, InvalidValue) as exc:  # the parent ended, or is gone
            self._log.info("child run %s %s: its parent not told: %s", row.run_key, state, exc)

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

    async def readable(self, sender: str, name: str, action: str) -> Run:
        """The run ``name`` (its task must exist), if ``sender`` may ``action`` it; final or
        not."""
        run = await self.resolve(name)
        await self.owned(sender, run, name, action)
        return run

    async def owned(self, sender: str, run: Run, name: str, action: str) -> TaskRecord:
        try:
            task = await self._store.get_task(run.task_id)
        except NotFound as error:
            raise NotFound(f"run {name!r} not found: its task {run.task_id!r} is gone") from error
        self._owners.check(sender, task.owner, run.task_id, f"{action} a run of")
        return task

    async def state_of(self, run: Run) -> str:
        """The run's state: its row's, else its latest attempt's."""
        if run.row is not None:
            return run.row.state
        return await self._state_without_row(run, run.key)

    async def _controllable(self, sender: str, name: str, action: str) -> Run:
        """The run ``name``, if ``sender`` may ``action`` it and it is not final."""
        run = await self.resolve(name)
        await self.owned(sender, run, name, action)
        if run.row is not None:
            state = run.row.state  # the store refuses a final row itself
        else:
            state = await self._state_without_row(run, name)
        if state in FINAL_RUN_STATES and not (action == "cancel" and state == "cancelled"):
            raise Conflict(f"run {run.key} is {state}")
        return run

    async def resolve(self, name: str) -> Run:
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
        """The fire's latest attempt (None: the store recorded none)."""
        return await self._store.latest_attempt(task, instant)
