"""``@query`` methods: found on the class (a subclass overriding its base), answered one by name
or all at once; a failing method is reported for its name while the others are answered; an
unknown name and an answer that is not plain data are usage errors; misdeclarations refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from tasks import (
    BaseTask,
    TaskContext,
    TaskDefinitionError,
    TaskResult,
    TaskUsageError,
    answer_queries,
    answer_query,
    queries_of,
    query,
)
from tests.tasks.kit import make_context


class Counter(BaseTask):
    category = "user"

    def __init__(self) -> None:
        self.done = 0

    @query("progress")
    def progress(self, ctx: TaskContext[Any]) -> dict[str, Any]:
        return {"done": self.done, "task": ctx.task_id}

    @query("broken")
    def broken(self, ctx: TaskContext[Any]) -> int:
        raise ValueError("no count yet")

    @query("when")
    def when(self, ctx: TaskContext[Any]) -> datetime:
        return ctx.scheduled_at  # not plain data

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult(success=True)


def test_queries_of_reads_the_class_and_a_subclass_overrides() -> None:
    assert queries_of(Counter) == {"progress": "progress", "broken": "broken", "when": "when"}

    class Quiet(Counter):
        def broken(self, ctx: TaskContext[Any]) -> int:  # no longer a query
            return 0

        @query("size")
        def size(self, ctx: TaskContext[Any]) -> int:
            return 3

    assert queries_of(Quiet) == {"progress": "progress", "when": "when", "size": "size"}
    assert queries_of(BaseTask) == {}


def test_two_methods_answering_one_query_are_refused() -> None:
    class Twice(Counter):
        @query("progress")
        def other(self, ctx: TaskContext[Any]) -> int:
            return 1

    with pytest.raises(TaskDefinitionError, match="query 'progress' has two methods"):
        queries_of(Twice)


def test_answer_query_answers_one_by_name() -> None:
    task, ctx = Counter(), make_context()
    task.done = 4
    assert answer_query(task, ctx, "progress") == {"done": 4, "task": "user.sample"}
    with pytest.raises(ValueError, match="no count yet"):
        answer_query(task, ctx, "broken")
    with pytest.raises(TaskUsageError, match="not a plain value"):
        answer_query(task, ctx, "when")
    with pytest.raises(TaskUsageError, match=r"answers no query 'nope' \(it answers: broken, "):
        answer_query(task, ctx, "nope")


def test_answer_queries_reports_a_failing_method_for_its_name() -> None:
    task, ctx = Counter(), make_context()
    answers = answer_queries(task, ctx)
    assert answers["progress"] == {"done": 0, "task": "user.sample"}
    assert answers["broken"] == {"error": "ValueError: no count yet"}
    assert answers["when"]["error"].startswith("TaskUsageError: result of query 'when'")
    assert answer_queries(object(), ctx) == {}


def test_query_refuses_a_bad_name_and_an_async_method() -> None:
    with pytest.raises(TaskUsageError, match="a query's name is printable text"):
        query("")
    with pytest.raises(TaskUsageError, match="a query's name"):
        query("x" * 101)
    with pytest.raises(TaskDefinitionError, match="marks a plain def method"):

        @query("later")
        async def later(self: Any, ctx: Any) -> int:
            return 1
