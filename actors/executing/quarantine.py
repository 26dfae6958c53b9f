"""Quarantine: a dispatch delivered more than ``poison_after`` times is poison (each of its runs
ended the executor running it, so it was never acknowledged). It is not run again: the task is
disabled first (no new fires), then the fire is dead-lettered with the reason and its execution
finished as failed."""

from __future__ import annotations

import logging
from collections import Counter

from actors.actor import Actor
from actors.executing.status import StatusEvents
from actors.scheduling.protocol import Dispatch
from actors.storing.client import StoreClient
from bus import RemoteError
from config import topics
from scheduler import Clock
from store.records import ExecutionOutcome, NewDeadLetter

POISON_AFTER = 3
DISABLE_TIMEOUT_S = 30.0


class Quarantine:
    """Quarantines poison for one executor; ``tasks`` are those it quarantined."""

    def __init__(
        self,
        actor: Actor,
        store: StoreClient,
        status: StatusEvents,
        *,
        clock: Clock,
        counters: Counter[str],
        log: logging.Logger,
        poison_after: int = POISON_AFTER,
    ) -> None:
        self._actor = actor
        self._store = store
        self._status = status
        self._clock = clock
        self._counters = counters
        self._log = log
        self.poison_after = poison_after
        self.tasks: set[str] = set()

    def is_poison(self, attempt: int) -> bool:
        """Whether a dispatch on its ``attempt``-th delivery is to be quarantined."""
        return attempt > self.poison_after

    async def quarantine(self, dispatch: Dispatch, attempt: int) -> None:
        """Disable the task first (no new fires), then dead-letter the fire and finish it."""
        reason = (
            f"poison: delivered {attempt} times, each run ended its executor "
            f"(limit {self.poison_after}); task disabled"
        )
        self._log.error("task %s quarantined: %s", dispatch.task_id, reason)
        self._counters["quarantined"] += 1
        self.tasks.add(dispatch.task_id)
        try:
            await self._actor.ask(
                topics.TASK_DISABLE, {"task_id": dispatch.task_id}, DISABLE_TIMEOUT_S
            )
        except RemoteError as exc:  # no scheduler right now: the dead letter says it all
            self._log.warning("cannot disable %s: %s", dispatch.task_id, exc)
        now = self._clock.wall()
        await self._store.add_dead_letter(
            NewDeadLetter(
                task_id=dispatch.task_id,
                scheduled_at=dispatch.scheduled_at,
                attempts=attempt,
                error_type="Poison",
                last_error=reason,
                reason=reason,
                failed_at=now,
            )
        )
        await self._store.finish_execution(
            dispatch.execution_id,
            ExecutionOutcome(
                completed_at=now,
                success=False,
                result={"error_type": ["Poison"], "quarantined": True},
                error_message=reason,
            ),
        )
        await self._status(dispatch, "quarantined", reason=reason)
