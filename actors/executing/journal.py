"""A run's steps and signals in the store: the :class:`tasks.steps.StepJournal` the executor
gives each run, over the typed store client (``store.step.list`` once, ``store.step.put`` per
finished step), and its :class:`tasks.signals.SignalInbox` (``store.run.signal.list``), both keyed
by the fire (``store.run_key``), so that every attempt of the fire finds the same steps and
signals."""

from __future__ import annotations

from collections.abc import Sequence

from actors.storing.client import StoreClient
from store.errors import InvalidValue
from store.records import InboxSignal, StepOutcome, StepRecord
from tasks.errors import TaskUsageError
from tasks.signals import Signal
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


class StoreInbox:
    """The signals sent to the run ``run_key``, as the store keeps them (in seq order); read
    when the run first looks at its signals. Signals sent while it runs reach it as pushes
    (``RunSignals.deliver``), not by reading again. ``loaded``: how many the last load found
    (None before the first), which tells the executor that the run has a row in the store."""

    def __init__(self, store: StoreClient, run_key: str) -> None:
        self._store = store
        self.run_key = run_key
        self.loaded: int | None = None

    async def load(self) -> Sequence[Signal]:
        signals = tuple(_signal(record) for record in await self._store.run_signals(self.run_key))
        self.loaded = len(signals)
        return signals


def _signal(record: InboxSignal) -> Signal:
    return Signal(
        seq=record.seq,
        name=record.name,
        payload=record.payload,
        sender=record.sender,
        sent_at=record.sent_at,
    )
