"""A run's status events: every step of a dispatch (queued, deferred, started, progress, its end)
published on ``scheduler.task.status.<owner>``, where its owner and the admins receive it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from actors.scheduling.protocol import Dispatch, owner_topic
from bus.envelope import Payload
from config import topics

Publish = Callable[[str, Payload], Awaitable[None]]
Announce = Callable[..., Awaitable[None]]  # announce(state, **fields) for one dispatch


class StatusEvents:
    """Publishes the status events of one executor's runs (``executor`` is its category)."""

    def __init__(self, publish: Publish, executor: str) -> None:
        self._publish = publish
        self._executor = executor

    async def __call__(self, dispatch: Dispatch, state: str, **fields: Any) -> None:
        await self._publish(
            owner_topic(topics.STATUS_EVENTS, dispatch.owner),
            {
                "task_id": dispatch.task_id,
                "execution_id": dispatch.execution_id,
                "scheduled_at": dispatch.scheduled_at.isoformat(),
                "attempt": dispatch.attempt,
                "state": state,
                "executor": self._executor,
                **fields,
            },
        )

    def of(self, dispatch: Dispatch) -> Announce:
        """``announce(state, **fields)`` for ``dispatch``."""
        return partial(self, dispatch)
