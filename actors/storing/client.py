"""StoreClient: the store actor as a typed object, for the actors that use it over the bus.

The scheduler and the executors call its methods as they would call :class:`store.Store`'s: with
the store's records, getting the store's records back, and catching the store's exceptions
(``NotFound``, ``Conflict``, ``LeaseLost``, ``InvalidValue``, ``StoreError``). This module is the
only one that spells the store's topics and payloads on the asking side (``actors.storing.actor``
and ``actors.storing.requests`` are the serving side; ``actors.storing.wire`` is what they share).

What is not the store's failure stays the bus's: no reply in time raises ``AskTimeout``; a
refusal the store did not decide (``busy``, ``denied``, ``no_responder``...) raises
``RemoteError``. Times that matter are the store actor's, never the asker's: no method sends
``now`` (the run methods accept it, to keep :class:`store.Store`'s signatures, and ignore it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from actors.storing.wire import STORE_CODES, from_plain, plain, store_error
from bus import Envelope, RemoteError
from bus.envelope import Payload
from config import topics
from store import Fence
from store.errors import StoreError
from store.leases import LeaseGrant
from store.records import (
    DeadLetterRecord,
    ExecutionOutcome,
    ExecutionRecord,
    InboxSignal,
    Lease,
    MissedRunRecord,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    NewSignal,
    Page,
    Recorded,
    RetentionReport,
    RunMark,
    RunRecord,
    RunSuspension,
    StatsReport,
    StepOutcome,
    StepRecord,
    TaskRecord,
    TaskSpec,
    TaskStatus,
)
from store.salvage import PartialPage

R = TypeVar("R")
Ask = Callable[[str, Payload, float | None], Awaitable[Envelope]]
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RecordedFire:
    """One attempt as ``record_fires`` stored it: its id, whether it was stored before (by this
    or an earlier leader), and its outcome if it has finished (None while it runs)."""

    execution_id: str
    duplicate: bool
    success: bool | None


@dataclass(frozen=True, slots=True)
class RekeyReport:
    """Where the store put the backup taken under the old key, and the key file that opens it."""

    backup: Path
    backup_key_file: Path | None
    key_source: str


class StoreClient:
    """The store on the bus, asked through ``ask`` (an actor's ``ask``) within ``timeout_s``."""

    def __init__(self, ask: Ask, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._ask = ask
        self.timeout_s = timeout_s

    async def _call(self, topic: str, payload: Payload, timeout_s: float | None = None) -> Payload:
        try:
            reply = await self._ask(
                topic, payload, self.timeout_s if timeout_s is None else timeout_s
            )
        except RemoteError as exc:
            if exc.code not in STORE_CODES:
                raise
            raise store_error(exc.code, exc.reason) from exc
        return reply.payload

    # ------------------------------------------------------------ tasks

    async def put_task(
        self, spec: TaskSpec, *, expected_version: int | None = None
    ) -> Recorded[TaskRecord]:
        payload = _spec_payload(spec) | {"expected_version": expected_version}
        reply = await self._call(topics.STORE_TASK_PUT, payload)
        return Recorded(from_plain(TaskRecord, reply["task"]), bool(reply["duplicate"]))

    async def put_tasks(
        self, puts: Sequence[tuple[TaskSpec, int | None]], *, fence: Fence | None = None
    ) -> list[Recorded[TaskRecord] | StoreError]:
        """``put_task`` of each (spec, expected version) in one write, fenced; each one's
        record, or the store's error for that one in its place (LeaseLost raises)."""
        payload = {
            "tasks": [
                _spec_payload(spec) | {"expected_version": expected} for spec, expected in puts
            ],
            "fence": _fence(fence),
        }
        reply = await self._call(topics.STORE_TASK_PUT_MANY, payload)
        return [
            store_error(entry["error"]["code"], entry["error"]["reason"])
            if "error" in entry
            else Recorded(from_plain(TaskRecord, entry["task"]), bool(entry["duplicate"]))
            for entry in reply["tasks"]
        ]

    async def get_task(self, task_id: str) -> TaskRecord:
        reply = await self._call(topics.STORE_TASK_GET, {"task_id": task_id})
        return from_plain(TaskRecord, reply["task"])

    async def list_tasks(
        self, *, after: str | None = None, limit: int = 100, owner: str | None = None
    ) -> Page[TaskRecord]:
        payload = {"after": after, "limit": limit, "owner": owner}
        return _page(TaskRecord, "tasks", await self._call(topics.STORE_TASK_LIST, payload))

    async def delete_task(self, task_id: str) -> bool:
        reply = await self._call(topics.STORE_TASK_DELETE, {"task_id": task_id})
        return bool(reply["deleted"])

    async def mark_run(
        self, task_id: str, *, last_run: datetime | None = None, next_run: datetime | None = None
    ) -> TaskRecord:
        payload = {"task_id": task_id, "last_run": _iso(last_run), "next_run": _iso(next_run)}
        reply = await self._call(topics.STORE_TASK_MARK_RUN, payload)
        return from_plain(TaskRecord, reply["task"])

    async def reset_task(
        self, task_id: str, *, accounted_through: datetime | None = None
    ) -> TaskRecord:
        payload = {"task_id": task_id, "accounted_through": _iso(accounted_through)}
        reply = await self._call(topics.STORE_TASK_RESET, payload)
        return from_plain(TaskRecord, reply["task"])

    async def task_status(self, task_id: str) -> TaskStatus:
        reply = await self._call(topics.STORE_TASK_STATUS, {"task_id": task_id})
        return from_plain(TaskStatus, reply["status"])

    # ------------------------------------------------------------ executions

    async def record_execution(
        self, new: NewExecution, *, fence: Fence | None = None
    ) -> Recorded[ExecutionRecord]:
        payload = _new_execution_payload(new) | {"fence": _fence(fence)}
        if new.outcome is not None:
            payload |= _outcome_payload(new.outcome, retry_count=False)
        reply = await self._call(topics.STORE_EXECUTION_RECORD, payload)
        return _recorded_execution(reply)

    async def record_fires(
        self,
        news: Sequence[NewExecution],
        *,
        marks: Sequence[RunMark] = (),
        fence: Fence | None = None,
    ) -> list[RecordedFire]:
        """New attempts (without outcomes) and their tasks' run marks in one write, all or
        nothing (LeaseLost for a stale fence). A fire whose (task, ``start_key``) another run
        holds is not recorded: its place holds that run's latest attempt, as a duplicate."""
        payload = {
            "executions": [_fire_payload(new) for new in news],
            "marks": [plain(mark) for mark in marks],
            "fence": _fence(fence),
        }
        reply = await self._call(topics.STORE_EXECUTION_RECORD_MANY, payload)
        return [
            RecordedFire(str(entry["execution_id"]), bool(entry["duplicate"]), entry["success"])
            for entry in reply["executions"]
        ]

    async def finish_execution(
        self, execution_id: str, outcome: ExecutionOutcome, *, fence: Fence | None = None
    ) -> Recorded[ExecutionRecord]:
        payload = {"execution_id": execution_id, "fence": _fence(fence)}
        payload |= _outcome_payload(outcome, retry_count=True)
        return _recorded_execution(await self._call(topics.STORE_EXECUTION_FINISH, payload))

    async def finish_executions(
        self, finishes: Sequence[tuple[str, ExecutionOutcome]]
    ) -> list[bool | StoreError]:
        """Each finish's ``duplicate`` flag, or the store's error for that one in its place."""
        payload = {
            "executions": [
                {"execution_id": execution_id} | _outcome_payload(outcome, retry_count=True)
                for execution_id, outcome in finishes
            ]
        }
        reply = await self._call(topics.STORE_EXECUTION_FINISH_MANY, payload)
        return [
            store_error(entry["error"]["code"], entry["error"]["reason"])
            if "error" in entry
            else bool(entry["duplicate"])
            for entry in reply["executions"]
        ]

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        reply = await self._call(topics.STORE_EXECUTION_GET, {"execution_id": execution_id})
        return from_plain(ExecutionRecord, reply["execution"])

    async def execution_outcomes(self, execution_ids: Sequence[str]) -> dict[str, bool | None]:
        payload = {"execution_ids": list(execution_ids)}
        reply = await self._call(topics.STORE_EXECUTION_OUTCOMES, payload)
        return dict(reply["outcomes"])

    async def history(
        self, task_id: str, *, before: str | None = None, limit: int = 50
    ) -> Page[ExecutionRecord]:
        payload = {"task_id": task_id, "before": before, "limit": limit}
        reply = await self._call(topics.STORE_EXECUTION_HISTORY, payload)
        return _page(ExecutionRecord, "executions", reply)

    async def unsettled_executions(
        self, *, since: datetime | None = None, after: str | None = None, limit: int = 100
    ) -> Page[ExecutionRecord]:
        payload = {"since": _iso(since), "after": after, "limit": limit}
        reply = await self._call(topics.STORE_EXECUTION_UNSETTLED, payload)
        return _page(ExecutionRecord, "executions", reply)

    async def stats(
        self, *, since: datetime | None = None, task_id: str | None = None, per_task: bool = True
    ) -> StatsReport:
        """With ``per_task`` False the report's ``tasks`` is empty (thousands would not fit)."""
        payload = {"since": _iso(since), "task_id": task_id, "per_task": per_task}
        reply = dict(await self._call(topics.STORE_STATS, payload))
        reply.setdefault("tasks", [])
        return from_plain(StatsReport, reply)

    # ------------------------------------------------------------ dead letters, missed runs

    async def add_dead_letter(self, letter: NewDeadLetter) -> Recorded[DeadLetterRecord]:
        reply = await self._call(topics.STORE_DEAD_LETTER_ADD, plain(letter))
        return Recorded(from_plain(DeadLetterRecord, reply["dead_letter"]), reply["duplicate"])

    async def dead_letters(
        self, *, task_id: str | None = None, before: str | None = None, limit: int = 50
    ) -> Page[DeadLetterRecord]:
        payload = {"task_id": task_id, "before": before, "limit": limit}
        reply = await self._call(topics.STORE_DEAD_LETTERS, payload)
        return _page(DeadLetterRecord, "dead_letters", reply)

    async def record_missed(
        self,
        task_id: str,
        runs: Sequence[NewMissedRun],
        *,
        fence: Fence | None = None,
        fired: bool = False,
    ) -> int:
        """``fired``: the fires were recorded and are ended as not run by the caller (an
        overlap skip): kept missed even so."""
        payload: dict[str, Any] = {
            "task_id": task_id,
            "runs": [plain(run) for run in runs],
            "fence": _fence(fence),
        }
        if fired:
            payload["fired"] = True
        reply = await self._call(topics.STORE_MISSED_RECORD, payload)
        return int(reply["recorded"])

    async def missed_runs(
        self, task_id: str, *, before: str | None = None, limit: int = 50
    ) -> Page[MissedRunRecord]:
        payload = {"task_id": task_id, "before": before, "limit": limit}
        reply = await self._call(topics.STORE_MISSED_LIST, payload)
        return _page(MissedRunRecord, "missed", reply)

    # ------------------------------------------------------------ run steps

    async def put_step(self, run_key: str, outcome: StepOutcome) -> Recorded[StepRecord]:
        """Keep a finished step once (the first put wins; a second is a duplicate)."""
        payload = {"run_key": run_key} | plain(outcome)
        reply = await self._call(topics.STORE_STEP_PUT, payload)
        return Recorded(from_plain(StepRecord, reply["step"]), bool(reply["duplicate"]))

    async def run_steps(self, run_key: str) -> tuple[StepRecord, ...]:
        reply = await self._call(topics.STORE_STEP_LIST, {"run_key": run_key})
        return tuple(from_plain(StepRecord, step) for step in reply["steps"])

    # ------------------------------------------------------------ durable runs
    # ``now`` (and a suspension's ``at``) are taken for the Store's signature and not sent: the
    # store actor's clock decides when a run is due.

    async def suspend_run(self, suspension: RunSuspension) -> RunRecord:
        """The run stored as suspended; ``state == "running"`` if it was due at once (fire its
        attempt now), unchanged if it has ended or knows of a later attempt."""
        payload = plain(suspension)
        del payload["at"]
        if suspension.answers is None:
            del payload["answers"]  # keeps those stored
        else:
            payload["answers"] = dict(suspension.answers)
        return from_plain(RunRecord, (await self._call(topics.STORE_RUN_SUSPEND, payload))["run"])

    async def wake_run(self, run_key: str, *, now: datetime | None = None) -> RunRecord | None:
        """The run, now running again, if this call woke it; None if it was not due."""
        reply = await self._call(topics.STORE_RUN_WAKE, {"run_key": run_key})
        return _maybe_run(reply["run"])

    async def put_signal(
        self, new: NewSignal, *, task_id: str, scheduled_at: datetime
    ) -> tuple[InboxSignal, RunRecord]:
        """The signal as kept in the run's inbox, and the run after (Conflict if it ended)."""
        payload = plain(new) | {"task_id": task_id, "scheduled_at": scheduled_at.isoformat()}
        reply = await self._call(topics.STORE_RUN_SIGNAL_PUT, payload)
        return from_plain(InboxSignal, reply["signal"]), from_plain(RunRecord, reply["run"])

    async def run_signals(self, run_key: str) -> tuple[InboxSignal, ...]:
        reply = await self._call(topics.STORE_RUN_SIGNAL_LIST, {"run_key": run_key})
        return tuple(from_plain(InboxSignal, signal) for signal in reply["signals"])

    async def control_run(
        self,
        run_key: str,
        *,
        task_id: str,
        scheduled_at: datetime,
        action: str,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> tuple[RunRecord, str]:
        """``cancel``, ``pause`` or ``resume`` the run: the run after, and its state before."""
        payload = {
            "run_key": run_key,
            "task_id": task_id,
            "scheduled_at": scheduled_at.isoformat(),
            "action": action,
            "reason": reason,
        }
        reply = await self._call(topics.STORE_RUN_CONTROL, payload)
        return from_plain(RunRecord, reply["run"]), str(reply["before"])

    async def reopen_run(
        self,
        run_key: str,
        *,
        task_id: str,
        scheduled_at: datetime,
        from_step: str | None = None,
        now: datetime | None = None,
    ) -> tuple[RunRecord, tuple[str, ...]]:
        """Make the ended run run again (``run retry``): the run after (``running``, its
        ``attempt`` the one to fire) and the names of the steps deleted (``from_step`` and
        those stored after it; without it, the failed steps). ``now`` is the store's clock."""
        payload: dict[str, Any] = {
            "run_key": run_key,
            "task_id": task_id,
            "scheduled_at": scheduled_at.isoformat(),
        }
        if from_step is not None:
            payload["from_step"] = from_step
        reply = await self._call(topics.STORE_RUN_REOPEN, payload)
        return from_plain(RunRecord, reply["run"]), tuple(str(n) for n in reply["deleted_steps"])

    async def get_run(self, run_key: str) -> RunRecord:
        reply = await self._call(topics.STORE_RUN_GET, {"run_key": run_key})
        return from_plain(RunRecord, reply["run"])

    async def list_runs(
        self,
        *,
        task_id: str | None = None,
        states: Sequence[str] = (),
        after: str | None = None,
        limit: int = 50,
        owner: str | None = None,
    ) -> Page[RunRecord]:
        payload = {
            "task_id": task_id,
            "states": list(states),
            "after": after,
            "limit": limit,
            "owner": owner,
        }
        return _page(RunRecord, "runs", await self._call(topics.STORE_RUN_LIST, payload))

    async def suspended_runs(
        self, *, after: str | None = None, limit: int = 100
    ) -> Page[RunRecord]:
        """Every sleeping or waiting run (paused ones included), by run key."""
        payload = {"after": after, "limit": limit}
        return _page(RunRecord, "runs", await self._call(topics.STORE_RUN_SUSPENDED, payload))

    async def finish_run(
        self,
        run_key: str,
        state: str,
        *,
        reason: str | None = None,
        now: datetime | None = None,
        answers: Mapping[str, Any] | None = None,
    ) -> RunRecord | None:
        """A final state on a run that has a row and has not ended; None if it has no row.
        ``answers`` (the run's answers to its queries) are kept with the row either way."""
        payload: dict[str, Any] = {"run_key": run_key, "state": state, "reason": reason}
        if answers is not None:
            payload["answers"] = dict(answers)
        return _maybe_run((await self._call(topics.STORE_RUN_FINISH, payload))["run"])

    async def latest_attempt(self, task_id: str, scheduled_at: datetime) -> ExecutionRecord | None:
        """The last attempt recorded of the fire (the run ``task_id@scheduled_at``); None if
        none is kept."""
        payload = {"task_id": task_id, "scheduled_at": scheduled_at.isoformat()}
        reply = await self._call(topics.STORE_RUN_ATTEMPT, payload)
        found = reply["execution"]
        return None if found is None else from_plain(ExecutionRecord, found)

    async def run_children(self, parent_key: str) -> tuple[RunRecord, ...]:
        """The runs spawned by the run ``parent_key``, by run key."""
        reply = await self._call(topics.STORE_RUN_CHILDREN, {"parent_key": parent_key})
        return tuple(from_plain(RunRecord, run) for run in reply["runs"])

    async def stranded_runs(self, *, after: str | None = None, limit: int = 100) -> Page[RunRecord]:
        """Runs woken (``running``) whose attempt has no recorded fire, by run key."""
        payload = {"after": after, "limit": limit}
        return _page(RunRecord, "runs", await self._call(topics.STORE_RUN_STRANDED, payload))

    async def run_retention(
        self, *, retention_days: float | None = None, max_executions: int | None = None
    ) -> RetentionReport:
        payload = {"retention_days": retention_days, "max_executions": max_executions}
        return from_plain(RetentionReport, await self._call(topics.STORE_RETENTION_RUN, payload))

    # ------------------------------------------------------------ the lease

    async def acquire_lease(self, name: str, holder: str, *, ttl_s: float) -> LeaseGrant:
        """A refused grant names the current holder; its ``token`` is 0 (never revealed)."""
        payload = {"name": name, "holder": holder, "ttl_s": ttl_s}
        reply = await self._call(topics.STORE_LEASE_ACQUIRE, payload)
        lease = {"token": 0} | dict(reply["lease"])
        return LeaseGrant(bool(reply["granted"]), from_plain(Lease, lease))

    async def renew_lease(self, name: str, holder: str, token: int, *, ttl_s: float) -> Lease:
        payload = {"name": name, "holder": holder, "token": token, "ttl_s": ttl_s}
        reply = await self._call(topics.STORE_LEASE_RENEW, payload)
        return from_plain(Lease, reply["lease"])

    async def release_lease(self, name: str, holder: str, token: int) -> bool:
        payload = {"name": name, "holder": holder, "token": token}
        reply = await self._call(topics.STORE_LEASE_RELEASE, payload)
        return bool(reply["released"])

    # ------------------------------------------------------------ maintenance

    async def integrity_check(self, *, timeout_s: float | None = None) -> list[str]:
        """What the check found wrong; empty when the file is sound."""
        reply = await self._call(topics.STORE_INTEGRITY_CHECK, {}, timeout_s)
        return [str(problem) for problem in reply["problems"]]

    async def rekey(self, *, timeout_s: float | None = None) -> RekeyReport:
        reply = await self._call(topics.STORE_REKEY, {}, timeout_s)
        key_file = reply["backup_key_file"]
        return RekeyReport(
            Path(reply["backup"]), None if key_file is None else Path(key_file), reply["key_source"]
        )

    async def vacuum(self, *, timeout_s: float | None = None) -> tuple[int, int]:
        """The file's pages before and after."""
        reply = await self._call(topics.STORE_VACUUM, {}, timeout_s)
        return int(reply["pages_before"]), int(reply["pages_after"])


def _iso(instant: datetime | None) -> str | None:
    return None if instant is None else instant.isoformat()


def _fence(fence: Fence | None) -> dict[str, Any] | None:
    return None if fence is None else {"lease": fence.lease, "token": fence.token}


def _spec_payload(spec: TaskSpec) -> dict[str, Any]:
    """The spec's fields that are set, its maps as plain dicts."""
    return {
        name: dict(value) if isinstance(value, Mapping) else value
        for name, value in plain(spec).items()
        if value is not None
    }


def _new_execution_payload(new: NewExecution) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "task_id": new.task_id,
        "scheduled_at": new.scheduled_at.isoformat(),
        "started_at": new.started_at.isoformat(),
        "retry_count": new.retry_count,
        "trigger": new.trigger,
    }
    return payload


def _fire_payload(new: NewExecution) -> dict[str, Any]:
    """A fire of ``record_fires``: the only request that carries a start key and a child run's
    parent, when it has them."""
    payload = _new_execution_payload(new)
    if new.start_key is not None:
        payload["start_key"] = new.start_key
    if new.parent_key is not None:
        payload["parent_key"] = new.parent_key
    if new.spawn_key is not None:
        payload["spawn_key"] = new.spawn_key
    if new.on_parent_cancel != "cancel":
        payload["on_parent_cancel"] = new.on_parent_cancel
    return payload


def _maybe_run(data: Mapping[str, Any] | None) -> RunRecord | None:
    return None if data is None else from_plain(RunRecord, data)


def _outcome_payload(outcome: ExecutionOutcome, *, retry_count: bool) -> dict[str, Any]:
    payload = plain(outcome)
    if outcome.result is not None:
        payload["result"] = dict(outcome.result)
    for name in ("run_started_at", "logs"):  # only when there is one: a smaller request
        if not payload[name]:
            payload.pop(name)
    if not retry_count:
        payload.pop("retry_count")
    return payload


def _recorded_execution(reply: Mapping[str, Any]) -> Recorded[ExecutionRecord]:
    return Recorded(from_plain(ExecutionRecord, reply["execution"]), bool(reply["duplicate"]))


def _page(cls: type[R], key: str, reply: Mapping[str, Any]) -> Page[R]:
    """A page of ``cls``; a :class:`PartialPage` naming the rows the store could not read."""
    items = tuple(from_plain(cls, item) for item in reply[key])
    unreadable = tuple(reply.get("unreadable") or ())
    if unreadable:
        return PartialPage(items, reply["next_cursor"], unreadable=unreadable)
    return Page(items, reply["next_cursor"])
