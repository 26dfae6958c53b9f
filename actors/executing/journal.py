"""A run's steps in the store: the :class:`tasks.steps.StepJournal` the executor gives each run,
over the typed store client (``store.step.list`` once, ``store.step.put`` per finished step),
keyed by the fire (``store.run_key``), so that every attempt of the fire finds the same steps."""

from __future__ import annotations

from collections.abc import Sequence

from actors.storing.client import StoreClient
from store.errors import InvalidValue
from store.records import StepOutcome, StepRecord
from tasks.errors import TaskUsageError
from tasks.steps import StoredStep


class StoreJournal:
    """The steps of the run ``run_key``, as the store keeps them."""

    def __init__(self, store: StoreClient, run_key: str) -> None:
        self._store = store
        self.run_key = run_key

    async def load(self) -> Sequence[StoredStep]:
        return tuple(_stored(record) for record in await self._store.run_steps(self.run_key))

    async def record(self, step: StoredStep) -> StoredStep:
        """The step as the store kept it; a result the store refuses (too big, too deep) is the
        task's mistake (TaskUsageError naming the step), and nothing is stored."""
        outcome = StepOutcome(
            name=step.name,
            status="ok" if step.ok else "error",
            result=step.result,
            error=step.error,
            attempts=step.attempts,
            started_at=step.started_at,
            finished_at=step.finished_at,
        )
        try:
            recorded = await self._store.put_step(self.run_key, outcome)
        except InvalidValue as exc:
            raise TaskUsageError(f"step {step.name!r}: {exc}") from exc
        return _stored(recorded.record)


def _stored(record: StepRecord) -> StoredStep:
    return StoredStep(
        name=record.name,
        ok=record.status == "ok",
        result=record.result,
        error=record.error,
        attempts=record.attempts,
        started_at=record.started_at,
        finished_at=record.finished_at,
    )
