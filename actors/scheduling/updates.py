"""Serving ``scheduler.run.update`` (a run's owner, the admins): an update of a live run, its
reader beside.

The run must be live: its state ``running`` and an executor holding an attempt of it. The
update is asked of it as a query is (``live_asks.LiveAsks``: pushed, kind ``update``, to the
executors of the run's category): the executor runs the update's validator (a refusal stores
nothing), keeps the accepted update in the run's inbox as the signal ``update:<name>``, runs
its handler (the step ``handled:<seq>``) and answers its return value. Without an answer within
UPDATE_WAIT_S on the scheduler's clock the run is taken as not live (``conflict``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from actors.scheduling.live_asks import LIVE_WAIT_S, LiveAsks
from actors.scheduling.protocol import RunPush
from actors.scheduling.runs import RunRequests, run_name
from actors.storing.fields import Fields, strict
from bus.envelope import Payload
from store.errors import Conflict, InvalidValue
from tasks.errors import TaskUsageError
from tasks.updates import check_update_name

UPDATE_WAIT_S = LIVE_WAIT_S  # for the live run's answer, on the scheduler's clock


class UpdateAsk(NamedTuple):
    run: str
    name: str
    payload: Any


def update_name(name: str, value: Any) -> str:
    try:
        return check_update_name(value)
    except TaskUsageError as error:
        raise InvalidValue(name, str(error)) from error


def _anything(name: str, value: Any) -> Any:
    return value


@strict
def read_update(request: Fields) -> UpdateAsk:
    return UpdateAsk(
        request.required("run", run_name),
        request.required("name", update_name),
        request.optional("payload", _anything, None),
    )


class Updates:
    """What ``scheduler.run.update`` does; ``sender`` is the requester's identity."""

    def __init__(self, *, runs: RunRequests, asks: LiveAsks) -> None:
        self._runs = runs
        self._asks = asks

    async def update(self, sender: str, ask: UpdateAsk) -> Payload:
        """``{run, seq, result}``: the handler's result once the live run took the update."""
        run = await self._runs.readable(sender, ask.run, "update")
        not_live = f"run {run.key} is not running; an update needs a live run"
        if await self._runs.state_of(run) != "running":
            raise Conflict(not_live)
        answer = await self._asks.ask(
            run.task_id,
            lambda ask_id: RunPush(
                run_key=run.key,
                kind="update",
                query_id=ask_id,
                name=ask.name,
                value=ask.payload,
                sender=sender,
            ),
            wait_s=UPDATE_WAIT_S,
        )
        if answer is None:
            raise Conflict(not_live)
        if answer.error is not None:
            raise InvalidValue("update", f"run {run.key}: {answer.error}")
        reply = answer.answer if isinstance(answer.answer, dict) else {}
        return {"run": run.key, "seq": reply.get("seq"), "result": reply.get("result")}
