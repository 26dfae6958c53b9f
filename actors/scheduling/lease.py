"""The scheduler's lease, held through the store: only its holder fires.

Every scheduler asks the store for the lease ``scheduler`` every third of the TTL until it is
granted, then renews it every third of the TTL. Expiry is judged by the store's clock alone. Every
write of a firing carries the lease's fencing token (``fence``), so once the lease has been granted
to a successor the old holder's writes are refused (``store.errors.LeaseLost``) even if it has not
noticed yet. A holder that cannot renew (store unreachable) gives up before the lease could have
expired by its own monotonic clock, so two holders never believe they fire at once.

The keeper waits and measures on the scheduler's ``Clock``: a test that advances a fake clock
past the TTL without a renewal sees the lease lost, as a paused host would.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from actors.storing.client import StoreClient
from config.errors import TaskbusError
from scheduler import Clock, sleep
from store import Fence
from store.errors import LeaseLost

log = logging.getLogger("taskbus.scheduler.lease")

LEASE_NAME = "scheduler"


def holder_name(identity: str) -> str:
    """Unique per scheduler instance: several may share one bus identity (and key)."""
    return f"{identity}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseKeeper:
    """Acquires, keeps and releases the lease ``name`` in ``store`` (whose timeout should be at
    most a third of ``ttl_s``), for the holder named at ``acquire``."""

    def __init__(
        self, store: StoreClient, ttl_s: float, *, clock: Clock, name: str = LEASE_NAME
    ) -> None:
        self._store = store
        self._clock = clock
        self.name = name
        self.ttl_s = ttl_s
        self.holder = ""
        self.token = 0
        self.current_holder = ""  # who holds it, as last seen
        self._valid_until = 0.0  # monotonic: by then the store may have granted it to another
        self.waiting = False  # in ``acquire`` or ``keep``
        self.asleep_until: float | None = None  # monotonic end of the wait between two asks

    @property
    def interval_s(self) -> float:
        return self.ttl_s / 3

    @property
    def fence(self) -> Fence:
        return Fence(self.name, self.token)

    @property
    def held(self) -> bool:
        return self.token > 0 and self._clock.monotonic() < self._valid_until

    async def acquire(self, holder: str) -> None:
        """Wait until the lease is granted to ``holder``."""
        self.holder = holder
        announced = ""
        async with self._asking():
            while True:
                sent = self._clock.monotonic()
                try:
                    grant = await self._store.acquire_lease(self.name, holder, ttl_s=self.ttl_s)
                except (TaskbusError, TimeoutError) as exc:
                    log.warning("scheduler lease: cannot ask the store (%s); retrying", exc)
                else:
                    self.current_holder = grant.lease.holder
                    if grant.granted:
                        self.token = grant.lease.token
                        self._valid_until = sent + self.ttl_s
                        log.info("scheduler lease %s granted, token %d", holder, self.token)
                        return
                    if self.current_holder != announced:
                        announced = self.current_holder
                        log.info("scheduler standby: lease held by %s", announced)
                await self._wait_until(sent + self.interval_s)

    async def keep(self) -> None:
        """Renew until the lease is lost; then raise LeaseLost (never returns normally)."""
        async with self._asking():
            while True:
                sent = self._clock.monotonic()
                try:
                    await self._store.renew_lease(
                        self.name, self.holder, self.token, ttl_s=self.ttl_s
                    )
                except LeaseLost as exc:
                    raise LeaseLost(f"scheduler lease lost: {exc}") from exc
                except (TaskbusError, TimeoutError) as exc:
                    log.warning("scheduler lease: renewal failed (%s)", exc)
                else:
                    self._valid_until = sent + self.ttl_s
                if not self.held:
                    raise LeaseLost(
                        f"scheduler lease not renewed for {self.ttl_s}s: it may have been "
                        "granted to another scheduler"
                    )
                await self._wait_until(min(sent + self.interval_s, self._valid_until))

    async def release(self) -> None:
        """Hand the lease over at once (on a clean stop), so a standby need not wait the TTL."""
        if self.token == 0:
            return
        try:
            await self._store.release_lease(self.name, self.holder, self.token)
        except (TaskbusError, TimeoutError) as exc:
            log.warning("scheduler lease: release failed (%s); it expires by itself", exc)
        self.token = 0

    async def _wait_until(self, monotonic: float) -> None:
        delay = max(0.0, monotonic - self._clock.monotonic())
        self.asleep_until = self._clock.monotonic() + delay  # the timer's own due time
        try:
            await sleep(self._clock, delay)
        finally:
            self.asleep_until = None

    @asynccontextmanager
    async def _asking(self) -> AsyncIterator[None]:
        self.waiting = True
        try:
            yield
        finally:
            self.waiting = False
