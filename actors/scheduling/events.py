"""What the scheduler publishes about a task, on its owner's topics (docs/protocol.md): the owner
and the admins receive it (``owner_topic``).

``status`` events follow a task's life (``defined``, ``queued``, ``missed``, ``retry_scheduled``,
``deleted``, ``invalid``); a ``dead`` event is a fire given up on: the dead letter the store
keeps, as its ``store.records.NewDeadLetter`` fields, plus ``scheduled``, the former name of
``scheduled_at``, kept so that listeners written against it keep working.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from actors.scheduling.protocol import DEAD_TOPIC, STATUS_TOPIC, owner_topic
from actors.storing.wire import plain
from bus.envelope import Payload
from store.records import NewDeadLetter

Publish = Callable[[str, Payload], Awaitable[None]]


def dead_letter_event(letter: NewDeadLetter) -> dict[str, Any]:
    """The ``scheduler.task.dead`` payload of ``letter``: the stored shape, and ``scheduled``."""
    event = plain(letter)
    event["scheduled"] = event["scheduled_at"]
    return event


class Events:
    """Publishes a task's events through ``publish`` (an actor's)."""

    def __init__(self, publish: Publish) -> None:
        self._publish = publish

    async def status(self, owner: str, task_id: str, state: str, **fields: Any) -> None:
        payload = {"task_id": task_id, "state": state, **fields}
        await self._publish(owner_topic(STATUS_TOPIC, owner), payload)

    async def dead(self, owner: str, letter: NewDeadLetter) -> None:
        await self._publish(owner_topic(DEAD_TOPIC, owner), dead_letter_event(letter))
