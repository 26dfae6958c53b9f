"""Asking a live run (``scheduler.run.query``, ``scheduler.run.update``): a push with an id to
the executors of the run's category (``RunPush`` kind ``query`` or ``update``, its id in
``query_id``), and a wait, at most a given time on the scheduler's clock, for the executor that
holds the run to answer ``scheduler.exec.answer`` with that id. Any other executor ignores the
push; an answer after the wait is dropped (``accepted`` false).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from actors.scheduling.protocol import RunPush, deliver_topic
from actors.scheduling.runs import Publish
from actors.storing import fields
from actors.storing.fields import Fields, strict
from bus.envelope import Payload
from scheduler import Clock, within

LIVE_WAIT_S = 1.0  # for a live answer, on the scheduler's clock
MAX_PENDING_ASKS = 10_000


class AnswerAsk(NamedTuple):
    query_id: str
    answer: Any
    error: str | None


def _anything(name: str, value: Any) -> Any:
    return value


@strict
def read_answer(request: Fields) -> AnswerAsk:
    query_id = request.required("query_id", fields.identifier)
    answer = request.optional("answer", _anything, None)
    error = request.optional("error", fields.message, None)
    return AnswerAsk(query_id, answer, error)


class LiveAsks:
    """The asks of live runs waiting for their answer, by id."""

    def __init__(self, *, publish: Publish, clock: Clock) -> None:
        self._publish = publish
        self._clock = clock
        self._pending: dict[str, asyncio.Future[AnswerAsk]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    async def ask(
        self,
        task_id: str,
        push: Callable[[str], RunPush],
        *,
        wait_s: float = LIVE_WAIT_S,
    ) -> AnswerAsk | None:
        """Publish ``push(ask_id)`` to the run's category and wait up to ``wait_s`` for its
        answer; None without one (no executor holds the run live, it did not answer in time, or
        too many asks wait already: then nothing is pushed)."""
        if len(self._pending) >= MAX_PENDING_ASKS:
            return None
        ask_id = uuid.uuid4().hex
        answered: asyncio.Future[AnswerAsk] = asyncio.get_running_loop().create_future()
        self._pending[ask_id] = answered
        try:
            await self._publish(deliver_topic(task_id), push(ask_id).payload())
            return await within(self._clock, wait_s, asyncio.shield(answered))
        except TimeoutError:
            return None
        finally:
            self._pending.pop(ask_id, None)

    def answer(self, ask: AnswerAsk) -> Payload:
        """An executor's answer to an ask still waited for (a late one is not taken)."""
        waiting = self._pending.pop(ask.query_id, None)
        if waiting is None or waiting.done():
            return {"accepted": False}
        waiting.set_result(ask)
        return {"accepted": True}
