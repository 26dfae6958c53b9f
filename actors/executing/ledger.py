"""What the executor asks the store about executions, through the typed store client: whether
each dispatched execution has finished, and each run's outcome, each gathered into batches
(:class:`StoreBatch`) so that a burst of runs costs one request, not one per run."""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from actors.executing.batching import StoreBatch
from actors.storing.client import StoreClient
from scheduler import Clock
from store.errors import NotFound
from store.records import ExecutionOutcome

BATCH_LIMIT = 500  # executions per batched store request

Finish = tuple[str, ExecutionOutcome]


class Ledger:
    """``outcome`` and ``finish`` as the store answers them, batched per turn of the loop."""

    def __init__(self, store: StoreClient, clock: Clock, *, limit: int = BATCH_LIMIT) -> None:
        self.store = store
        self._outcomes: StoreBatch[str, bool | None] = StoreBatch(
            self._outcomes_of, limit=limit, name="execution outcomes", clock=clock
        )
        self._finishes: StoreBatch[Finish, bool] = StoreBatch(
            self._finish_all, limit=limit, size=_finish_size, name="execution finishes", clock=clock
        )

    async def outcome(self, execution_id: str) -> bool | None:
        """Whether the execution finished (its success) or not yet (None); NotFound if the
        store does not know it."""
        return await self._outcomes.submit(execution_id)

    async def finish(self, execution_id: str, outcome: ExecutionOutcome) -> bool:
        """Store how the run ended; True if the store had it already (a duplicate)."""
        return await self._finishes.submit((execution_id, outcome))

    async def close(self) -> None:
        await self._outcomes.close()
        await self._finishes.close()

    async def _outcomes_of(self, execution_ids: list[str]) -> list[bool | BaseException | None]:
        outcomes = await self.store.execution_outcomes(execution_ids)
        return [
            outcomes[i] if i in outcomes else NotFound(f"execution {i!r} not found")
            for i in execution_ids
        ]

    async def _finish_all(self, finishes: list[Finish]) -> Sequence[bool | BaseException]:
        """Committed together; one the store refuses fails alone."""
        return await self.store.finish_executions(finishes)


def _finish_size(finish: Finish) -> int:
    """About how many bytes an outcome adds to a batched finish request."""
    _, outcome = finish
    size = 256 + len(outcome.error_message or "")
    size += sum(64 + 4 * len(line.message) for line in outcome.logs)  # 4: UTF-8 at worst
    if outcome.result:
        size += len(msgpack.packb(dict(outcome.result), use_bin_type=True, default=str))
    return size
