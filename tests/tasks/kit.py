"""Helpers of the task tests (not collected): a recording fake of TaskServices, a context."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from scheduler import FakeClock
from tasks import TaskContext, TaskOptions
from tasks.context import ProgressCallback

SCHEDULED_AT = datetime(2024, 5, 1, 23, 30, tzinfo=UTC)
Reply = dict[str, Any] | BaseException | Callable[[dict[str, Any]], dict[str, Any]]


class FakeServices:
    """Records every ask and publish; answers asks from canned replies by topic.

    A reply is a map (returned as a copy), an exception (raised), or a function of the payload
    (for replies that depend on it, or that move a fake clock as time passing in the store).
    """

    def __init__(self, replies: Mapping[str, Reply] | None = None) -> None:
        self.replies = dict(replies or {})
        self.asks: list[tuple[str, dict[str, Any], float | None]] = []
        self.published: list[tuple[str, dict[str, Any]]] = []

    async def ask(
        self, topic: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        self.asks.append((topic, copy.deepcopy(payload), timeout))
        if topic not in self.replies:
            raise LookupError(f"unknown_topic: nobody serves {topic}")
        reply = self.replies[topic]
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply):
            return reply(payload)
        return copy.deepcopy(reply)

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self.published.append((topic, copy.deepcopy(payload)))

    def topics(self) -> list[str]:
        return [topic for topic, _, _ in self.asks]


class ProgressLog:
    """A progress callback that remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    async def __call__(self, fraction: float, note: str) -> None:
        self.calls.append((fraction, note))


def make_context(
    options: TaskOptions | None = None,
    *,
    services: FakeServices | None = None,
    clock: FakeClock | None = None,
    task_id: str = "user.sample",
    on_progress: ProgressCallback | None = None,
    **kwargs: Any,
) -> TaskContext[Any]:
    return TaskContext(
        task_id=task_id,
        execution_id="0190b2c4-0000-7000-8000-000000000001",
        scheduled_at=SCHEDULED_AT,
        attempt=1,
        options=options if options is not None else TaskOptions(),
        services=services if services is not None else FakeServices(),
        clock=clock if clock is not None else FakeClock(SCHEDULED_AT),
        on_progress=on_progress,
        **kwargs,
    )
