"""Many small store asks as one: what the executor's runs ask in one turn of the event loop.

Dispatches reach the executor in bursts (its consumer's credit); each run asks the store whether
its execution already finished, and later stores its outcome. ``StoreBatch`` gathers what the
runs submit during one turn of the loop (at most ``limit`` items, or ``max_bytes`` by estimate)
and sends it as one request: one bus round trip and one store operation instead of one each.
Every run still waits for its own answer, and nothing is answered before the store answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from bus import BusError, Busy
from scheduler import Clock, SystemClock, sleep

K = TypeVar("K")
V = TypeVar("V")

log = logging.getLogger("taskbus.executor")

RETRY_PAUSE_S = 0.2  # between two tries of a batch the store did not take
# What asking again may cure: the store's mailbox was full (busy), or no answer came in time.
# A store's own answer (StoreError) or any other refusal (denied, no responder...) would not.
TRANSIENT: tuple[type[Exception], ...] = (Busy, TimeoutError)


class StoreBatch(Generic[K, V]):
    """``submit(item)`` resolves to ``send([... item ...])[i]``; ``send`` takes a list of
    ``limit`` items at most and returns one answer per item, in order, an exception being that
    item's failure alone (or it raises, for all of them).

    ``send`` is tried again, after ``RETRY_PAUSE_S`` on ``clock``, while it raises one of
    ``TRANSIENT`` (it must be safe to repeat); any other error fails every item of the batch.
    """

    def __init__(
        self,
        send: Callable[[list[K]], Awaitable[Sequence[V | BaseException]]],
        *,
        limit: int,
        max_bytes: int = 256 * 1024,
        size: Callable[[K], int] | None = None,
        name: str = "batch",
        clock: Clock | None = None,
    ) -> None:
        self._send = send
        self._limit = limit
        self._max_bytes = max_bytes
        self._size = size
        self._name = name
        self._clock = clock or SystemClock()
        self._items: list[K] = []
        self._futures: list[asyncio.Future[V]] = []
        self._bytes = 0
        self._scheduled: asyncio.Handle | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0

    def submit(self, item: K) -> asyncio.Future[V]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[V] = loop.create_future()
        size = 0 if self._size is None else self._size(item)
        if self._items and self._bytes + size > self._max_bytes:
            self._flush()
        self._items.append(item)
        self._futures.append(future)
        self._bytes += size
        if len(self._items) >= self._limit:
            self._flush()
        elif self._scheduled is None:
            self._scheduled = loop.call_soon(self._flush)  # the end of this turn, not a pause
        return future

    async def close(self) -> None:
        """Cancel what is being sent (its callers are cancelled)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        for future in self._futures:
            future.cancel()
        self._items, self._futures = [], []
        for task in list(self._sending):
            task.cancel()
        await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures, self._bytes = [], [], 0
        task = asyncio.get_running_loop().create_task(self._run(items, futures))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _run(self, items: list[K], futures: list[asyncio.Future[V]]) -> None:
        self.batches += 1
        self.items += len(items)
        try:
            answers = await self._send_patiently(items)
            if len(answers) != len(items):
                raise BusError(f"{self._name}: {len(answers)} answers to {len(items)} items")
        except asyncio.CancelledError:
            for future in futures:
                future.cancel()
            raise
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, answer in zip(futures, answers, strict=True):
            if future.done():
                continue
            if isinstance(answer, BaseException):
                future.set_exception(answer)
            else:
                future.set_result(answer)

    async def _send_patiently(self, items: list[K]) -> Sequence[V | BaseException]:
        while True:
            try:
                return await self._send(items)
            except TRANSIENT as exc:
                log.warning("%s of %d failed (%s); trying again", self._name, len(items), exc)
            await sleep(self._clock, RETRY_PAUSE_S)
