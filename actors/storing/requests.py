"""The store actor's requests, one reader per topic: the serving side of the store's wire.

Each reader takes a request's payload and returns what its handler takes (a record of
``store.records`` or a small named tuple), refusing a missing, mistyped or unknown field with
``InvalidValue`` naming it before anything is written. The parsers are ``actors.storing.fields``;
the asking side is ``actors.storing.client``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from actors.storing.fields import (
    Fields,
    any_text,
    count,
    entries,
    fence,
    flag,
    identifier,
    identifiers,
    instant,
    message,
    positive,
    seconds,
    strict,
    text,
)
from actors.storing.inputs import (
    finish_entries,
    missed_runs,
    new_dead_letter,
    new_execution,
    new_execution_entries,
    outcome,
    run_mark_entries,
    task_spec,
)
from store import Fence
from store.errors import InvalidValue
from store.records import (
    FINAL_RUN_STATES,
    RUN_ACTIONS,
    RUN_STATES,
    ExecutionOutcome,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    NewSignal,
    RunMark,
    StepOutcome,
    TaskSpec,
    check_run_key,
    query_answers,
    signal_name,
)


class TaskPut(NamedTuple):
    spec: TaskSpec
    expected_version: int | None


class TaskPutMany(NamedTuple):
    puts: tuple[TaskPut, ...]
    fence: Fence | None


class TaskPage(NamedTuple):
    after: str | None
    limit: int
    owner: str | None


class MarkRun(NamedTuple):
    task_id: str
    last_run: datetime | None
    next_run: datetime | None


class Reset(NamedTuple):
    task_id: str
    accounted_through: datetime | None


class Record(NamedTuple):
    new: NewExecution
    fence: Fence | None


class RecordMany(NamedTuple):
    news: tuple[NewExecution, ...]
    marks: tuple[RunMark, ...]
    fence: Fence | None


class Finish(NamedTuple):
    execution_id: str
    outcome: ExecutionOutcome
    fence: Fence | None


class HistoryPage(NamedTuple):
    task_id: str
    before: str | None
    limit: int


class Unsettled(NamedTuple):
    since: datetime | None
    after: str | None
    limit: int


class Stats(NamedTuple):
    since: datetime | None
    task_id: str | None
    per_task: bool


class DeadLetterPage(NamedTuple):
    task_id: str | None
    before: str | None
    limit: int


class Missed(NamedTuple):
    task_id: str
    runs: tuple[NewMissedRun, ...]
    fence: Fence | None
    fired: bool = False


class Retention(NamedTuple):
    retention_days: float | None
    max_executions: int | None


class LeaseAsk(NamedTuple):
    """``holder`` None: the requester's authenticated identity; ``token``/``ttl_s`` 0 where the
    topic takes none."""

    name: str
    holder: str | None
    token: int
    ttl_s: float


@strict
def task_put(request: Fields) -> TaskPut:
    return TaskPut(task_spec(request), request.optional("expected_version", count, None))


def _task_put_entry(entry: Fields) -> TaskPut:
    put = TaskPut(task_spec(entry), entry.optional("expected_version", count, None))
    entry.done()
    return put


@strict
def task_put_many(request: Fields) -> TaskPutMany:
    """1 to MAX_EXECUTION_BATCH ``store.task.put`` payloads in ``tasks``, and a ``fence``."""
    return TaskPutMany(
        request.required("tasks", lambda n, v: entries(n, v, _task_put_entry)),
        request.optional("fence", fence, None),
    )


@strict
def task_ref(request: Fields) -> str:
    return request.required("task_id", identifier)


@strict
def task_page(request: Fields) -> TaskPage:
    return TaskPage(
        request.optional("after", text, None),
        request.optional("limit", positive, 100),
        request.optional("owner", any_text, None),
    )


@strict
def mark_run(request: Fields) -> MarkRun:
    return MarkRun(
        request.required("task_id", identifier),
        request.optional("last_run", instant, None),
        request.optional("next_run", instant, None),
    )


@strict
def reset(request: Fields) -> Reset:
    return Reset(
        request.required("task_id", identifier),
        request.optional("accounted_through", instant, None),
    )


@strict
def record(request: Fields) -> Record:
    return Record(new_execution(request), request.optional("fence", fence, None))


@strict
def record_many(request: Fields) -> RecordMany:
    return RecordMany(
        request.optional("executions", new_execution_entries, ()),
        request.optional("marks", run_mark_entries, ()),
        request.optional("fence", fence, None),
    )


@strict
def finish(request: Fields) -> Finish:
    execution_id = request.required("execution_id", identifier)
    ending = outcome(request, required=True)
    assert ending is not None
    return Finish(execution_id, ending, request.optional("fence", fence, None))


@strict
def finish_many(request: Fields) -> tuple[tuple[str, ExecutionOutcome], ...]:
    return request.required("executions", finish_entries)


@strict
def execution_ids(request: Fields) -> tuple[str, ...]:
    return request.required("execution_ids", identifiers)


@strict
def execution_ref(request: Fields) -> str:
    return request.required("execution_id", identifier)


@strict
def history_page(request: Fields) -> HistoryPage:
    """A task's page of executions or of missed runs, latest first."""
    return HistoryPage(
        request.required("task_id", identifier),
        request.optional("before", text, None),
        request.optional("limit", positive, 50),
    )


@strict
def unsettled(request: Fields) -> Unsettled:
    return Unsettled(
        request.optional("since", instant, None),
        request.optional("after", text, None),
        request.optional("limit", positive, 100),
    )


@strict
def stats(request: Fields) -> Stats:
    return Stats(
        request.optional("since", instant, None),
        request.optional("task_id", identifier, None),
        request.optional("per_task", flag, True),
    )


@strict
def dead_letter(request: Fields) -> NewDeadLetter:
    return new_dead_letter(request)


@strict
def dead_letter_page(request: Fields) -> DeadLetterPage:
    return DeadLetterPage(
        request.optional("task_id", identifier, None),
        request.optional("before", text, None),
        request.optional("limit", positive, 50),
    )


@strict
def missed(request: Fields) -> Missed:
    return Missed(
        request.required("task_id", identifier),
        request.required("runs", missed_runs),
        request.optional("fence", fence, None),
        request.optional("fired", flag, False),
    )


class StepPut(NamedTuple):
    run_key: str
    outcome: StepOutcome


def _status(name: str, value: Any) -> Any:
    if value not in ("ok", "error"):
        raise InvalidValue(name, f"expected ok or error, got {value!r}")
    return value


def _anything(name: str, value: Any) -> Any:
    """A step's result: any value the wire carried (the store checks its size and depth)."""
    return value


@strict
def step_put(request: Fields) -> StepPut:
    run_key = request.required("run_key", identifier)
    outcome = StepOutcome(
        name=request.required("name", identifier),
        status=request.required("status", _status),
        started_at=request.required("started_at", instant),
        finished_at=request.required("finished_at", instant),
        result=request.optional("result", _anything, None),
        error=request.optional("error", message, None),
        attempts=request.optional("attempts", positive, 1),
    )
    return StepPut(run_key, outcome)


@strict
def step_list(request: Fields) -> str:
    return request.required("run_key", identifier)


# ------------------------------------------------------------------ durable runs


class Suspend(NamedTuple):
    """A ``RunSuspension`` but its ``at``, which is the store actor's clock."""

    run_key: str
    task_id: str
    scheduled_at: datetime
    attempt: int
    wake_at: datetime | None
    waiting: str | None
    consumed: int
    paused: bool
    answers: dict[str, Any] | None


class SignalPut(NamedTuple):
    new: NewSignal
    task_id: str
    scheduled_at: datetime


class Control(NamedTuple):
    run_key: str
    task_id: str
    scheduled_at: datetime
    action: str
    reason: str | None


class Reopen(NamedTuple):
    run_key: str
    task_id: str
    scheduled_at: datetime
    from_step: str | None


class RunPage(NamedTuple):
    task_id: str | None
    states: tuple[str, ...]
    after: str | None
    limit: int
    owner: str | None


class SuspendedPage(NamedTuple):
    after: str | None
    limit: int


class RunFinish(NamedTuple):
    run_key: str
    state: str
    reason: str | None
    answers: dict[str, Any] | None


class Attempt(NamedTuple):
    task_id: str
    scheduled_at: datetime


class StrandedPage(NamedTuple):
    after: str | None
    limit: int


def _one_of(choices: Sequence[str]) -> Callable[[str, Any], str]:
    def parse(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise InvalidValue(name, f"expected a string, got {type(value).__name__}")
        if value not in choices:
            raise InvalidValue(name, f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _run_key(request: Fields, task_id: str, scheduled_at: datetime) -> str:
    """The request's ``run_key``, which must be the run key of its task and instant."""
    return check_run_key("run_key", request.required("run_key", identifier), task_id, scheduled_at)


def _states(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidValue(name, f"expected a list, got {type(value).__name__}")
    if len(value) > len(RUN_STATES):
        raise InvalidValue(name, f"has {len(value)} entries, expected 0..{len(RUN_STATES)}")
    parse = _one_of(RUN_STATES)
    return tuple(parse(f"{name}[{index}]", state) for index, state in enumerate(value))


@strict
def run_suspend(request: Fields) -> Suspend:
    task_id = request.required("task_id", identifier)
    scheduled_at = request.required("scheduled_at", instant)
    return Suspend(
        _run_key(request, task_id, scheduled_at),
        task_id,
        scheduled_at,
        request.required("attempt", positive),
        request.optional("wake_at", instant, None),
        request.optional("waiting", signal_name, None),
        request.optional("consumed", count, 0),
        request.optional("paused", flag, False),
        request.optional("answers", query_answers, None),
    )


@strict
def run_ref(request: Fields) -> str:
    return request.required("run_key", identifier)


@strict
def run_signal_put(request: Fields) -> SignalPut:
    task_id = request.required("task_id", identifier)
    scheduled_at = request.required("scheduled_at", instant)
    new = NewSignal(
        run_key=_run_key(request, task_id, scheduled_at),
        name=request.required("name", signal_name),
        payload=request.optional("payload", _anything, None),
        sender=request.required("sender", any_text),
        sent_at=request.required("sent_at", instant),
    )
    return SignalPut(new, task_id, scheduled_at)


@strict
def run_control(request: Fields) -> Control:
    task_id = request.required("task_id", identifier)
    scheduled_at = request.required("scheduled_at", instant)
    return Control(
        _run_key(request, task_id, scheduled_at),
        task_id,
        scheduled_at,
        request.required("action", _one_of(sorted(RUN_ACTIONS))),
        request.optional("reason", message, None),
    )


@strict
def run_reopen(request: Fields) -> Reopen:
    task_id = request.required("task_id", identifier)
    scheduled_at = request.required("scheduled_at", instant)
    return Reopen(
        _run_key(request, task_id, scheduled_at),
        task_id,
        scheduled_at,
        request.optional("from_step", identifier, None),
    )


@strict
def run_page(request: Fields) -> RunPage:
    return RunPage(
        request.optional("task_id", identifier, None),
        request.optional("states", _states, ()),
        request.optional("after", text, None),
        request.optional("limit", positive, 50),
        request.optional("owner", any_text, None),
    )


@strict
def suspended_page(request: Fields) -> SuspendedPage:
    return SuspendedPage(
        request.optional("after", text, None),
        request.optional("limit", positive, 100),
    )


@strict
def run_finish(request: Fields) -> RunFinish:
    return RunFinish(
        request.required("run_key", identifier),
        request.required("state", _one_of(sorted(FINAL_RUN_STATES))),
        request.optional("reason", message, None),
        request.optional("answers", query_answers, None),
    )


@strict
def run_attempt(request: Fields) -> Attempt:
    return Attempt(
        request.required("task_id", identifier),
        request.required("scheduled_at", instant),
    )


@strict
def run_parent(request: Fields) -> str:
    return request.required("parent_key", identifier)


@strict
def stranded_page(request: Fields) -> StrandedPage:
    return StrandedPage(
        request.optional("after", text, None),
        request.optional("limit", positive, 100),
    )


@strict
def retention(request: Fields) -> Retention:
    return Retention(
        request.optional("retention_days", seconds, None),
        request.optional("max_executions", positive, None),
    )


@strict
def lease_acquire(request: Fields) -> LeaseAsk:
    name = request.required("name", identifier)
    holder = request.optional("holder", identifier, None)
    return LeaseAsk(name, holder, 0, request.required("ttl_s", seconds))


@strict
def lease_renew(request: Fields) -> LeaseAsk:
    name = request.required("name", identifier)
    holder = request.optional("holder", identifier, None)
    token = request.required("token", positive)
    return LeaseAsk(name, holder, token, request.required("ttl_s", seconds))


@strict
def lease_release(request: Fields) -> LeaseAsk:
    name = request.required("name", identifier)
    holder = request.optional("holder", identifier, None)
    return LeaseAsk(name, holder, request.required("token", positive), 0.0)


@strict
def nothing(request: Fields) -> None:
    """A request that takes no field."""
