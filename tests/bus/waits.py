"""Waiting helpers for bus tests: every wait checks a condition and has a deadline, none sleeps
for luck."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from bus import BusClient, Envelope, Inbox


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 5.0
) -> None:
    """Poll ``condition`` (sync or async) until it holds; fail naming ``what`` at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.01)


async def next_matching(
    inbox: Inbox[Envelope], predicate: Callable[[Envelope], bool], timeout: float = 5.0
) -> Envelope:
    """The next envelope of ``inbox`` satisfying ``predicate``; others are skipped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"no matching envelope within {timeout}s")
        try:
            envelope = await inbox.get(timeout=remaining)
        except TimeoutError:
            raise AssertionError(f"no matching envelope within {timeout}s") from None
        if predicate(envelope):
            return envelope


async def barrier(client: BusClient) -> None:
    """A round trip through the broker on ``client``'s own connection.

    The broker answers in order, so everything it sent this client before the answer (events,
    deliveries, replies) has been read into the client's inboxes when this returns.
    """
    reply = await client.ask("bus.stats", timeout=5)
    assert reply.sender == "broker"


async def peers(client: BusClient) -> list[dict[str, object]]:
    """The broker's ``bus.peers`` table, asked over ``client``."""
    reply = await client.ask("bus.peers", timeout=5)
    table = reply.payload["peers"]
    assert isinstance(table, list)
    return table
