"""The store's input records read from a request's fields: a task definition, an attempt, an
outcome, a dead letter, missed runs, log lines, and the batched entries of each, every problem
named by its field's path (``runs[3].last_at``). The per-topic readers are ``requests``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from actors.storing.fields import (
    Fields,
    any_text,
    count,
    entries,
    flag,
    identifier,
    instant,
    mapping,
    message,
    positive,
    seconds,
    text,
)
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
    on_parent_cancel_text,
)


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
        paused=request.optional("paused", flag, False),
        note=request.optional("note", any_text, None),
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
    return entries(name, value, _log_line, low=0, high=MAX_LOG_LINES)


def _log_line(entry: Fields) -> LogLine:
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
    return entries(name, value, _missed_run, high=MAX_MISSED_BATCH)


def _missed_run(entry: Fields) -> NewMissedRun:
    run = NewMissedRun(
        first_at=entry.required("first_at", instant),
        last_at=entry.required("last_at", instant),
        count=entry.required("count", positive),
        reason=entry.required("reason", text),
    )
    entry.done()
    return run


def new_execution_entry(entry: Fields) -> NewExecution:
    """A new attempt without an outcome (``store.execution.record_many``); with ``start_key``,
    a start the store records once per (task, key); with ``parent_key`` (and ``spawn_key``,
    ``on_parent_cancel``), a child run's first fire."""
    new = NewExecution(
        task_id=entry.required("task_id", identifier),
        scheduled_at=entry.required("scheduled_at", instant),
        started_at=entry.required("started_at", instant),
        retry_count=entry.optional("retry_count", count, 0),
        trigger=entry.optional("trigger", text, "schedule"),
        start_key=entry.optional("start_key", identifier, None),
        parent_key=entry.optional("parent_key", identifier, None),
        spawn_key=entry.optional("spawn_key", identifier, None),
        on_parent_cancel=entry.optional("on_parent_cancel", on_parent_cancel_text, "cancel"),
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
