"""Writes a fire depends on (its record, its missed runs, a dead letter): tried again while the
store cannot be reached and the lease is held, so that a store restart delays firing instead of
losing it.

What the store refuses for the request's own sake (``NotFound``, ``Conflict``, ``InvalidValue``)
is raised at once, and so is ``LeaseLost`` (a ``Conflict``): a fenced write refused because the
lease was granted again. Anything else (the store failed, did not answer, the bus refused the
ask) is tried again every ``RETRY_PAUSE_S`` on the scheduler's clock, until it succeeds or the
lease could have expired, which raises LeaseLost.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from actors.scheduling.lease import LeaseKeeper
from bus import BusError
from scheduler import Clock, sleep
from store.errors import Conflict, InvalidValue, LeaseLost, NotFound, StoreError

T = TypeVar("T")
RETRY_PAUSE_S = 0.5  # between two tries of a write the store did not take


class Owed:
    def __init__(self, lease: LeaseKeeper, *, clock: Clock, log: logging.Logger) -> None:
        self._lease = lease
        self._clock = clock
        self._log = log

    async def __call__(self, what: str, write: Callable[[], Awaitable[T]]) -> T:
        """``write()``'s result, once the store took it; ``what`` names it in the log."""
        while True:
            try:
                return await write()
            except (NotFound, Conflict, InvalidValue):
                raise  # LeaseLost included: the store refused the fence
            except (StoreError, BusError, TimeoutError) as exc:
                problem: Exception = exc
            if not self._lease.held:
                raise LeaseLost(f"lease expired while {what} failed: {problem}") from problem
            self._log.warning("%s failed (%s); trying again", what, problem)
            await sleep(self._clock, RETRY_PAUSE_S)
