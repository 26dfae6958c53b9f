"""Bus payloads of the store actor: strict reading of requests, plain rendering of records.

Instants travel as ISO 8601 text with a UTC offset (``2024-05-01T03:00:00+00:00``) and come back
in UTC. A request with a missing, mistyped or unknown field is refused with InvalidValue naming
the field.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

from actors.store import values
from actors.store.errors import InvalidValue
from actors.store.records import (
    MAX_EXECUTION_BATCH,
    MAX_MISSED_BATCH,
    ExecutionOutcome,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    RunMark,
    TaskSpec,
)
from actors.store.writes import Fence

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


# ------------------------------------------------------------------ replies


def plain(record: Any) -> dict[str, Any]:
    """A record dataclass as a payload map: instants as ISO 8601 text, nested records as maps."""
    names = _field_names(type(record))  # type: ignore[arg-type]
    return {name: _plain_value(getattr(record, name)) for name in names}


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    assert is_dataclass(cls)
    return tuple(f.name for f in fields(cls))


def _plain_value(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return plain(value)
    if isinstance(value, tuple):
        return [_plain_value(item) for item in value]
    return value


_SCALARS = frozenset({str, int, float, bool, bytes, dict, list})
