"""Queries: named questions about a run's state, answered by the task's ``@query`` methods
(``scheduler.run.query``). The executor holding a live run answers one at once
(``answer_query``); it also stores every answer (``answer_queries``) with each suspend and
finish of the run, for when the run is not live. The model: docs/runs.md ("Queries").
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from tasks._marks import marked
from tasks.errors import TaskDefinitionError, TaskUsageError
from tasks.result import check_plain

MAX_QUERY_NAME_CHARS = 100
_ANSWERS = "__taskbus_query__"

F = TypeVar("F", bound=Callable[..., Any])


def check_query_name(name: object, what: str = "a query's name") -> str:
    """``name`` if it is printable text of 1..MAX_QUERY_NAME_CHARS characters; else
    TaskUsageError."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_QUERY_NAME_CHARS
        or not name.isprintable()
    ):
        shown = name[:40] if isinstance(name, str) else name
        raise TaskUsageError(
            f"{what} is printable text of 1..{MAX_QUERY_NAME_CHARS} characters, not {shown!r}"
        )
    return name


def query(name: str) -> Callable[[F], F]:
    """Mark ``def m(self, ctx) -> plain data`` (sync, quick, no side effects) of a BaseTask
    subclass as the answer to the query ``name`` about a run of the task."""
    check_query_name(name, "a query's name")

    def mark(fn: F) -> F:
        if not callable(fn) or inspect.iscoroutinefunction(fn):
            raise TaskDefinitionError(f"query({name!r}) marks a plain def method, not {fn!r}")
        setattr(fn, _ANSWERS, name)
        return fn

    return mark


def queries_of(cls: type) -> dict[str, str]:
    """``{query name: method name}`` of ``cls``'s ``@query`` methods (a subclass's method
    overrides its base's of the same name); TaskDefinitionError if two methods of the class
    answer one query."""
    return marked(cls, lambda value: getattr(value, _ANSWERS, None), "query", "methods")


def _answer(task: object, ctx: object, name: str, method: str) -> Any:
    answer = getattr(task, method)(ctx)
    check_plain(f"of query {name!r}", answer)
    return answer


def answer_query(task: object, ctx: object, name: str) -> Any:
    """``task``'s answer to the query ``name`` (plain data); TaskUsageError for a name the task
    does not answer or an answer that is not plain data; the method's own error propagates."""
    methods = queries_of(type(task))
    method = methods.get(name) if isinstance(name, str) else None
    if method is None:
        known = ", ".join(sorted(methods)) or "none"
        raise TaskUsageError(
            f"{type(task).__qualname__} answers no query {name!r} (it answers: {known})"
        )
    return _answer(task, ctx, name, method)


def answer_queries(task: object, ctx: object) -> dict[str, Any]:
    """Every query of ``task`` answered (``{name: answer}``, empty for a task without
    queries); a method that fails (or answers what is not plain data) gives
    ``{"error": "<Type>: message"}`` for its name, and the others are still answered."""
    answers: dict[str, Any] = {}
    for name, method in queries_of(type(task)).items():
        try:
            answers[name] = _answer(task, ctx, name, method)
        except Exception as exc:
            answers[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return answers
