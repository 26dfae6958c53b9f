"""What a task may do on the bus, as the executor provides it."""

from __future__ import annotations

from typing import Any, Protocol


class TaskServices(Protocol):
    """Requests and events over the bus, on the executor's connection.

    ``ask`` sends a request (to the store's ``store.*``, the scheduler's ``scheduler.*``, the
    broker's ``bus.stats``) and returns the reply's payload; a refusal (an ``$error`` reply) or
    no reply within ``timeout`` seconds (None: the bus default) raises. ``publish`` sends an event.
    """

    async def ask(
        self, topic: str, payload: dict[str, Any], timeout: float | None = None
    ) -> dict[str, Any]: ...

    async def publish(self, topic: str, payload: dict[str, Any]) -> None: ...
