"""Bounded inboxes a client hands to its user: event subscriptions, served requests, work."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from bus.envelope import Envelope
from bus.errors import BusClosed

T = TypeVar("T")


class Inbox(Generic[T]):
    """A bounded buffer with an async iterator. When full, new items are dropped and counted."""

    def __init__(self, maxsize: int) -> None:
        self._items: deque[T] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._on_push: Callable[[], None] | None = None
        self.dropped = 0
        self.received = 0

    def push(self, item: T) -> bool:
        if self._closed or len(self._items) >= self._maxsize:
            self.dropped += 1
            return False
        self._items.append(item)
        self.received += 1
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._on_push is not None:
            self._on_push()
        return True

    def notify(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` on every push: lets one reader wait on several inboxes at once."""
        self._on_push = callback

    def pop(self) -> T | None:
        """The oldest item, or None; never waits."""
        return self._items.popleft() if self._items else None

    @property
    def closed(self) -> bool:
        return self._closed

    async def get(self, timeout: float | None = None) -> T:
        while not self._items:
            if self._closed:
                raise BusClosed("inbox closed")
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            try:
                if timeout is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, timeout)
            finally:
                self._waiter = None
        return self._items.popleft()

    def get_nowait_all(self, limit: int = 1 << 30) -> list[T]:
        """Everything buffered (up to ``limit``), without waiting."""
        items = self._items
        if len(items) <= limit:
            taken = list(items)
            items.clear()
            return taken
        return [items.popleft() for _ in range(limit)]

    def __len__(self) -> int:
        return len(self._items)

    def __aiter__(self) -> Inbox[T]:
        return self

    async def __anext__(self) -> T:
        try:
            return await self.get()
        except BusClosed:
            raise StopAsyncIteration from None

    def close(self) -> None:
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Subscription(Inbox[Envelope]):
    def __init__(self, prefixes: tuple[str, ...], maxsize: int) -> None:
        super().__init__(maxsize)
        self.prefixes = prefixes


@dataclass(slots=True)
class Delivery:
    """A unit of work from a queue. Acknowledge it once done; until then it may be redelivered.

    It is settled once: the first ``ack`` or ``nack`` counts and any later one does nothing (a
    handler may settle its work itself, and the runtime's settling after it is then a no-op;
    a second ack must never acknowledge a redelivered copy).
    """

    envelope: Envelope
    attempt: int
    _settle: Callable[[bytes, bool | None], None]
    settled: bool = False

    def ack(self) -> None:
        self._done(None)

    def nack(self, requeue: bool = True) -> None:
        self._done(requeue)

    def _done(self, requeue: bool | None) -> None:
        if not self.settled:
            self.settled = True
            self._settle(self.envelope.id, requeue)


class Consumer(Inbox[Delivery]):
    """Work from one queue. The broker never sends more than ``credit`` unacknowledged items,
    so this inbox cannot overflow."""

    def __init__(self, queue: str, credit: int) -> None:
        super().__init__(maxsize=4 * credit + 16)
        self.queue = queue
        self.credit = credit
