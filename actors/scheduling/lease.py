"""The scheduler's lease, held through the store: only its holder fires.

Every scheduler asks ``store.lease.acquire`` for the lease ``scheduler`` every third of the TTL
until it is granted, then renews it every third of the TTL. Expiry is judged by the store's clock
alone. Every write of a firing carries the lease's fencing token, so once the lease has been
granted to a successor the old holder's writes are refused (``lease_lost``) even if it has not
noticed yet. A holder that cannot renew (store unreachable) gives up before the lease could have
expired by its own monotonic clock, so two holders never believe they fire at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bus import Envelope, RemoteError
from bus.envelope import Payload
from config.errors import TaskbusError

log = logging.getLogger("taskbus.scheduler.lease")

LEASE_NAME = "scheduler"
Ask = Callable[[str, Payload, float], Awaitable[Envelope]]


class LeaseLost(TaskbusError):
    """This scheduler no longer holds the lease: it must stop firing at once."""


def holder_name(identity: str) -> str:
    """Unique per scheduler instance: several may share one bus identity (and key)."""
    return f"{identity}@{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Lease:
    def __init__(
        self,
        ask: Ask,
        holder: str,
        ttl_s: float,
        *,
        name: str = LEASE_NAME,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ask = ask
        self.holder = holder
        self.name = name
        self.ttl_s = ttl_s
        self._monotonic = monotonic
        self.token = 0
        self.current_holder = ""  # who holds it, as last seen
        self._valid_until = 0.0  # monotonic: by then the store may have granted it to another

    @property
    def interval_s(self) -> float:
        return self.ttl_s / 3

    @property
    def fence(self) -> dict[str, Any]:
        return {"lease": self.name, "token": self.token}

    @property
    def held(self) -> bool:
        return self.token > 0 and self._monotonic() < self._valid_until

    async def acquire(self) -> None:
        """Wait until the lease is granted to this scheduler."""
        announced = ""
        while True:
            sent = self._monotonic()
            try:
                reply = await self._ask(
                    "store.lease.acquire",
                    {"name": self.name, "holder": self.holder, "ttl_s": self.ttl_s},
                    self.interval_s,
                )
            except (RemoteError, TimeoutError, TaskbusError) as exc:
                log.warning("scheduler lease: cannot ask the store (%s); retrying", exc)
            else:
                lease = reply.payload["lease"]
                self.current_holder = str(lease["holder"])
                if reply.payload["granted"]:
                    self.token = int(lease["token"])
                    self._valid_until = sent + self.ttl_s
                    log.info("scheduler lease %s granted, token %d", self.holder, self.token)
                    return
                if self.current_holder != announced:
                    announced = self.current_holder
                    log.info("scheduler standby: lease held by %s", announced)
            await asyncio.sleep(max(0.0, sent + self.interval_s - self._monotonic()))

    async def keep(self) -> None:
        """Renew until the lease is lost; then raise LeaseLost (never returns normally)."""
        while True:
            sent = self._monotonic()
            try:
                await self._ask(
                    "store.lease.renew",
                    {
                        "name": self.name,
                        "holder": self.holder,
                        "token": self.token,
                        "ttl_s": self.ttl_s,
                    },
                    self.interval_s,
                )
            except RemoteError as exc:
                if exc.code == "lease_lost":
                    raise LeaseLost(f"scheduler lease lost: {exc.reason}") from exc
                log.warning("scheduler lease: renewal failed (%s)", exc)
            except (TimeoutError, TaskbusError) as exc:
                log.warning("scheduler lease: renewal failed (%s)", exc)
            else:
                self._valid_until = sent + self.ttl_s
            if not self.held:
                raise LeaseLost(
                    f"scheduler lease not renewed for {self.ttl_s}s: it may have been granted to "
                    "another scheduler"
                )
            await asyncio.sleep(
                max(0.0, min(sent + self.interval_s, self._valid_until) - self._monotonic())
            )

    async def release(self) -> None:
        """Hand the lease over at once (on a clean stop), so a standby need not wait the TTL."""
        if self.token == 0:
            return
        try:
            await self._ask(
                "store.lease.release",
                {"name": self.name, "holder": self.holder, "token": self.token},
                self.interval_s,
            )
        except (RemoteError, TimeoutError, TaskbusError) as exc:
            log.warning("scheduler lease: release failed (%s); it expires by itself", exc)
        self.token = 0
