"""Serving ``scheduler.run.retry``: running an ended run again, from a step on or for its failed
steps (``run retry RUN [--from-step NAME]``), its task's owner's and the admins' ask.

The run is resolved and checked as every run ask is (``RunRequests``); a run the store keeps no
row of whose retry waits for its time has not ended, and is refused ``conflict`` here, as the
store refuses any other run that has not ended. The store reopens the run in one write
(``reopen_run``: the steps deleted, the row ``running`` with the attempt to fire), then the new
attempt of the same fire is recorded and dispatched (trigger ``retry``, carrying the run's
wakes). A scheduler that dies between the two leaves the run ``running`` with an attempt no
execution records: the next leader fires it (``stranded_runs``). The dead letter of the fire
given up before is kept, as history.
"""

from __future__ import annotations

from typing import NamedTuple

from actors.scheduling import definitions
from actors.scheduling.firing import Firing
from actors.scheduling.roster import Roster
from actors.scheduling.runs import RunRequests, run_name
from actors.storing import fields
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from actors.storing.wire import plain
from bus.envelope import Payload
from config.sections import SchedulerSettings
from scheduler import Clock
from store.errors import Conflict


class RetryAsk(NamedTuple):
    run: str
    from_step: str | None


@strict
def read_retry(request: Fields) -> RetryAsk:
    return RetryAsk(
        request.required("run", run_name), request.optional("from_step", fields.identifier, None)
    )


class RunRetries:
    """What ``scheduler.run.retry`` does; ``sender`` is the requester's identity."""

    def __init__(
        self,
        *,
        store: StoreClient,
        runs: RunRequests,
        roster: Roster,
        firing: Firing,
        clock: Clock,
        settings: SchedulerSettings,
    ) -> None:
        self._store = store
        self._runs = runs
        self._roster = roster
        self._firing = firing
        self._clock = clock
        self._settings = settings

    async def retry(self, sender: str, ask: RetryAsk) -> Payload:
        """Reopen the run (Conflict if it has not ended, or succeeded and no step is named;
        NotFound for a step it never stored), then fire its next attempt; ``{run,
        execution_id, deleted_steps}``."""
        run = await self._runs.resolve(ask.run)
        record = await self._runs.owned(sender, run, ask.run, "retry")
        if run.row is None:
            state = await self._runs.state_of(run)  # a waiting retry: still running
            if state == "running":
                raise Conflict(f"run {run.key} is {state}")
        task = self._roster.get(run.task_id)
        if task is None:  # disabled, or a child run's task
            task = definitions.compile_task(record, self._settings)
        row, deleted = await self._store.reopen_run(
            run.key,
            task_id=run.task_id,
            scheduled_at=run.scheduled_at,
            from_step=ask.from_step,
            now=self._clock.wall(),
        )
        execution_id = await self._firing.fire(
            task, run.scheduled_at, attempt=row.attempt, reason="retry", wakes=row.wakes
        )
        return {"run": plain(row), "execution_id": execution_id, "deleted_steps": list(deleted)}
