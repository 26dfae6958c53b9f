"""The store actor's requests, one reader per topic: the serving side of the store's wire.

Each reader takes a request's payload and returns what its handler takes (a record of
``store.records`` or a small named tuple), refusing a missing, mistyped or unknown field with
``InvalidValue`` naming it before anything is written. The parsers are ``actors.storing.fields``;
the asking side is ``actors.storing.client``.
"""

from __future__ import annotations

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
    inside,
    instant,
    mapping,
    message,
    positive,
    seconds,
    strict,
    text,
)
from store import Fence
from store.errors import InvalidValue
from store.records import (
    MAX_LOG_LINES,
    MAX_MISSED_BATCH,
    ExecutionOutcome,
    LogLine,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    RunMark,
    TaskSpec,
)

# ------------------------------------------------------------------ requests


def task_spec(request: Fields) -> TaskSpec:
    return TaskSpec(
        task_id=request.required("task_id", identifier),
        task_class=request.required("task_class", text),
        schedule=request.required("schedule", text),
        config=request.optional("config", mapping, {}),
        enabled=request.optional("enabled", flag, True),
        timezone=request.optional("timezone", identifier, "UTC"),
        misfire_policy=request.optional("misfire_policy", mapping, None),
        retry_policy=request.optional("retry_policy", mapping, None),
        run_policy=request.optional("run_policy", mapping, None),
        owner=request.optional("owner", any_text, ""),
        next_run=request.optional("next_run", instant, None),
        accounted_through=request.optional("accounted_through", instant, None),
    )


def outcome(
    request: Fields, *, required: bool, retry_count: bool = True
) -> ExecutionOutcome | None:
    """The fields of how a run ended; with ``required`` False, None if ``completed_at`` is
    absent (and then the other outcome fields must be absent too). With ``retry_count`` False the
    request's ``retry_count`` is not read here: it is the attempt's (``new_execution``), and the
    outcome keeps it.
    """
    completed: datetime | None = (
        request.required("completed_at", instant)
        if required
        else request.optional("completed_at", instant, None)
    )
    names: tuple[str, ...] = (
        "success",
        "result",
        "error_message",
        "duration_seconds",
        "run_started_at",
        "logs",
    )
    if retry_count:
        names += ("retry_count",)
    if completed is None:
        for name in names:
            request.optional(name, lambda n, v: _needs_completion(n), None)
        return None
    return ExecutionOutcome(
        completed_at=completed,
        success=request.required("success", flag),
        result=request.optional("result", mapping, None),
        error_message=request.optional("error_message", message, None),
        retry_count=request.optional("retry_count", count, None) if retry_count else None,
        duration_seconds=request.optional("duration_seconds", seconds, None),
        run_started_at=request.optional("run_started_at", instant, None),
        logs=request.optional("logs", log_lines, ()),
    )


def log_lines(name: str, value: Any) -> tuple[LogLine, ...]:
    """0 to MAX_LOG_LINES maps of ``at``, ``level``, ``message``."""
    if not isinstance(value, list | tuple):
        raise InvalidValue(name, f"expected a list, got {type(value).__name__}")
    if len(value) > MAX_LOG_LINES:
        raise InvalidValue(name, f"has {len(value)} lines, at most {MAX_LOG_LINES}")
    return tuple(_log_line(f"{name}[{index}]", entry) for index, entry in enumerate(value))


def _log_line(name: str, value: Any) -> LogLine:
    entry = Fields(mapping(name, value))
    with inside(name):
        line = LogLine(
            at=entry.required("at", instant),
            level=entry.required("level", text),
            message=entry.required("message", any_text),
        )
        entry.done()
    return line


def _needs_completion(name: str) -> None:
    raise InvalidValue(name, "needs completed_at")


def new_execution(request: Fields) -> NewExecution:
    """One attempt: ``retry_count`` (0, the first attempt, if absent) is the attempt's, and the
    outcome's if the request has one.
    """
    return NewExecution(
        task_id=request.required("task_id", identifier),
        scheduled_at=request.required("scheduled_at", instant),
        started_at=request.required("started_at", instant),
        retry_count=request.optional("retry_count", count, 0),
        trigger=request.optional("trigger", text, "schedule"),
        outcome=outcome(request, required=False, retry_count=False),
    )


def new_dead_letter(request: Fields) -> NewDeadLetter:
    return NewDeadLetter(
        task_id=request.required("task_id", identifier),
        scheduled_at=request.required("scheduled_at", instant),
        attempts=request.required("attempts", positive),
        error_type=request.required("error_type", any_text),
        last_error=request.required("last_error", message),
        reason=request.required("reason", any_text),
        failed_at=request.required("failed_at", instant),
    )


def missed_runs(name: str, value: Any) -> tuple[NewMissedRun, ...]:
    """1 to MAX_MISSED_BATCH maps of ``first_at``, ``last_at``, ``count``, ``reason``; a bad
    entry is named with its index: ``runs[3].last_at: is before first_at``.
    """
    if not isinstance(value, list | tuple):
        raise InvalidValue(name, f"expected a list, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_MISSED_BATCH:
        raise InvalidValue(name, f"has {len(value)} entries, expected 1..{MAX_MISSED_BATCH}")
    return tuple(_missed_run(f"{name}[{index}]", entry) for index, entry in enumerate(value))


def _missed_run(name: str, value: Any) -> NewMissedRun:
    entry = Fields(mapping(name, value))
    with inside(name):
        run = NewMissedRun(
            first_at=entry.required("first_at", instant),
            last_at=entry.required("last_at", instant),
            count=entry.required("count", positive),
            reason=entry.required("reason", text),
        )
        entry.done()
    return run


def new_execution_entry(entry: Fields) -> NewExecution:
    """A new attempt without an outcome (``store.execution.record_many``)."""
    new = NewExecution(
        task_id=entry.required("task_id", identifier),
        scheduled_at=entry.required("scheduled_at", instant),
        started_at=entry.required("started_at", instant),
        retry_count=entry.optional("retry_count", count, 0),
        trigger=entry.optional("trigger", text, "schedule"),
    )
    entry.done()
    return new


def run_mark_entry(entry: Fields) -> RunMark:
    mark = RunMark(
        task_id=entry.required("task_id", identifier),
        last_run=entry.optional("last_run", instant, None),
        next_run=entry.optional("next_run", instant, None),
    )
    entry.done()
    return mark


def finish_entry(entry: Fields) -> tuple[str, ExecutionOutcome]:
    execution_id = entry.required("execution_id", identifier)
    ending = outcome(entry, required=True)
    entry.done()
    assert ending is not None
    return execution_id, ending


def new_execution_entries(name: str, value: Any) -> tuple[NewExecution, ...]:
    return entries(name, value, new_execution_entry, low=0)


def run_mark_entries(name: str, value: Any) -> tuple[RunMark, ...]:
    return entries(name, value, run_mark_entry, low=0)


def finish_entries(name: str, value: Any) -> tuple[tuple[str, ExecutionOutcome], ...]:
    return entries(name, value, finish_entry)


class TaskPut(NamedTuple):
    spec: TaskSpec
    expected_version: int | None


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
