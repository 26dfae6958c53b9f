"""Reading store requests strictly: the store actor's side of the wire (``wire`` renders replies).

Instants travel as ISO 8601 text with a UTC offset (``2024-05-01T03:00:00+00:00``) and come back
in UTC. A request with a missing, mistyped or unknown field is refused with InvalidValue naming
the field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from store import Fence, values
from store.errors import InvalidValue
from store.records import (
    MAX_EXECUTION_BATCH,
    MAX_MISSED_BATCH,
    ExecutionOutcome,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    RunMark,
    TaskSpec,
)

T = TypeVar("T")
_MISSING: Any = object()


class Fields:
    """Reads a request payload field by field; :meth:`done` refuses fields nobody asked for."""

    def __init__(self, payload: Mapping[str, Any]) -> None:
        self._payload = payload
        self._seen: set[str] = set()

    def required(self, name: str, parse: Callable[[str, Any], T]) -> T:
        self._seen.add(name)
        if name not in self._payload:
            raise InvalidValue(name, "is required")
        return parse(name, self._payload[name])

    def optional(self, name: str, parse: Callable[[str, Any], T], default: T) -> T:
        """``default`` if the field is absent or nil."""
        self._seen.add(name)
        value = self._payload.get(name, _MISSING)
        if value is _MISSING or value is None:
            return default
        return parse(name, value)

    def done(self) -> None:
        unknown = sorted(str(name) for name in self._payload if name not in self._seen)
        if unknown:
            raise InvalidValue(unknown[0], "is not a field of this request")


# ------------------------------------------------------------------ field parsers


def text(name: str, value: Any) -> str:
    return values.text(name, value)


def any_text(name: str, value: Any) -> str:
    return values.text(name, value, empty=True)


def identifier(name: str, value: Any) -> str:
    return values.identifier(name, value)


def instant(name: str, value: Any) -> datetime:
    if not isinstance(value, str):
        raise InvalidValue(name, f"expected ISO 8601 text, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidValue(name, f"{value!r} is not an ISO 8601 date and time") from None
    if parsed.tzinfo is None:
        raise InvalidValue(name, f"{value!r} has no UTC offset (add +00:00 or Z)")
    return values.instant(name, parsed)


def mapping(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidValue(name, f"expected a map, got {type(value).__name__}")
    return dict(value)


def flag(name: str, value: Any) -> bool:
    return values.flag(name, value)


def count(name: str, value: Any) -> int:
    return values.count(name, value)


def positive(name: str, value: Any) -> int:
    return values.count(name, value, low=1)


def seconds(name: str, value: Any) -> float:
    return values.seconds(name, value)


def message(name: str, value: Any) -> str:
    return values.message(name, value)


@contextmanager
def _inside(name: str) -> Iterator[None]:
    """Names a problem of a nested field by its path: ``fence.token``, ``runs[3].last_at``."""
    try:
        yield
    except InvalidValue as exc:
        raise InvalidValue(f"{name}.{exc.field}", exc.problem) from None


def fence(name: str, value: Any) -> Fence:
    lease = Fields(mapping(name, value))
    with _inside(name):
        parsed = Fence(lease.required("lease", identifier), lease.required("token", positive))
        lease.done()
    return parsed


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
    names: tuple[str, ...] = ("success", "result", "error_message", "duration_seconds")
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
    )


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
    with _inside(name):
        run = NewMissedRun(
            first_at=entry.required("first_at", instant),
            last_at=entry.required("last_at", instant),
            count=entry.required("count", positive),
            reason=entry.required("reason", text),
        )
        entry.done()
    return run


def entries(name: str, value: Any, read: Callable[[Fields], T], *, low: int = 1) -> tuple[T, ...]:
    """``low`` to MAX_EXECUTION_BATCH maps, each read by ``read`` (which must call ``done``);
    a bad entry is named with its index: ``executions[3].scheduled_at: is required``.
    """
    parsed: list[T] = []
    for index, entry in enumerate(_batch(name, value, low)):
        item = f"{name}[{index}]"
        fields_ = Fields(mapping(item, entry))
        with _inside(item):
            parsed.append(read(fields_))
    return tuple(parsed)


def identifiers(name: str, value: Any) -> tuple[str, ...]:
    """1 to MAX_EXECUTION_BATCH identifiers."""
    return tuple(
        identifier(f"{name}[{index}]", item) for index, item in enumerate(_batch(name, value, 1))
    )


def _batch(name: str, value: Any, low: int) -> list[Any] | tuple[Any, ...]:
    """A list of ``low`` to MAX_EXECUTION_BATCH entries."""
    if not isinstance(value, list | tuple):
        raise InvalidValue(name, f"expected a list, got {type(value).__name__}")
    if not low <= len(value) <= MAX_EXECUTION_BATCH:
        raise InvalidValue(name, f"has {len(value)} entries, expected {low}..{MAX_EXECUTION_BATCH}")
    return value


def new_execution_entry(entry: Fields) -> NewExecution:
    """A new attempt without an outcome (``store.execution.record_many``)."""
    new = NewExecution(
        task_id=entry.required("task_id", identifier),
        scheduled_at=entry.required("scheduled_at", instant),
        started_at=entry.required("started_at", instant),
        retry_count=entry.optional("retry_count", count, 0),
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


# ------------------------------------------------------------------ one reader per store topic


def strict(read: Callable[[Fields], T]) -> Callable[[Mapping[str, Any]], T]:
    """``read`` as a route's reader: a payload in, the request out, and no field left unread."""

    @functools.wraps(read)
    def reader(payload: Mapping[str, Any]) -> T:
        request = Fields(payload)
        value = read(request)
        request.done()
        return value

    return reader


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
