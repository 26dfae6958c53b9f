"""``scheduler_lease``: who may schedule, until when, with a fencing token; and the fences.

A lease is granted to one holder until ``expires_at``. Every new grant (to anyone, after the
previous holder released it or let it expire) increases ``token`` by one, and tokens are never
reused, so a store write stamped with a lease's token (a ``Fence``) is refused once someone
else has been granted the lease since: a paused scheduler that wakes up cannot overwrite its
successor's work. The writes that take a fence check it here (``check_fence``; a batch of
records reads each lease's token once, ``lease_tokens``). ``now`` is always an argument: expiry
follows the clock the caller passes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from store import values
from store._sql import Connection, one, scalar
from store.errors import LeaseLost
from store.records import Lease


@dataclass(frozen=True, slots=True)
class Fence:
    """A write stamped with a lease: refused if the lease has been granted again since."""

    lease: str
    token: int


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    """``granted``: ``lease`` is the caller's; otherwise it is the current holder's."""

    granted: bool
    lease: Lease


def _current(connection: Connection, name: str) -> tuple[str | None, int, int] | None:
    row = one(
        connection, "SELECT holder, expires_at, token FROM scheduler_lease WHERE name = ?", [name]
    )
    return None if row is None else (row[0], int(row[1]), int(row[2]))


def _lease(name: str, holder: str, token: int, expires_us: int) -> Lease:
    return Lease(name=name, holder=holder, token=token, expires_at=values.from_us(expires_us))


def acquire(
    connection: Connection, name: str, holder: str, ttl_s: float, now: datetime
) -> LeaseGrant:
    """Grant the lease if it is free, expired or already the caller's (then it is extended and
    keeps its token); otherwise report who holds it.
    """
    now_us = values.to_us(now)
    expires_us = values.to_us(now + timedelta(seconds=ttl_s))
    current = _current(connection, name)
    if current is None:
        connection.execute(
            "INSERT INTO scheduler_lease (name, holder, expires_at, token) VALUES (?, ?, ?, 1)",
            [name, holder, expires_us],
        )
        return LeaseGrant(True, _lease(name, holder, 1, expires_us))
    current_holder, current_expiry, token = current
    live = current_holder is not None and current_expiry > now_us
    if live and current_holder != holder:
        assert current_holder is not None
        return LeaseGrant(False, _lease(name, current_holder, token, current_expiry))
    if not live:
        token += 1
    connection.execute(
        "UPDATE scheduler_lease SET holder = ?, expires_at = ?, token = ? WHERE name = ?",
        [holder, expires_us, token, name],
    )
    return LeaseGrant(True, _lease(name, holder, token, expires_us))


def renew(
    connection: Connection, name: str, holder: str, token: int, *, ttl_s: float, now: datetime
) -> Lease:
    """Extend the caller's live lease; LeaseLost if it expired, was released or re-granted."""
    now_us = values.to_us(now)
    current = _current(connection, name)
    if current is None:
        raise LeaseLost(f"lease {name!r} was never granted")
    current_holder, current_expiry, current_token = current
    if current_holder != holder or current_token != token:
        raise LeaseLost(
            f"lease {name!r} token {token} of {holder!r} is no longer current "
            f"(now token {current_token}, holder {current_holder!r})"
        )
    if current_expiry <= now_us:
        raise LeaseLost(
            f"lease {name!r} of {holder!r} expired at {values.from_us(current_expiry).isoformat()}"
        )
    expires_us = values.to_us(now + timedelta(seconds=ttl_s))
    connection.execute(
        "UPDATE scheduler_lease SET expires_at = ? WHERE name = ?", [expires_us, name]
    )
    return _lease(name, holder, token, expires_us)


def release(connection: Connection, name: str, holder: str, token: int, now: datetime) -> bool:
    """Give the lease up at once; False (and nothing changes) if it was not the caller's."""
    return (
        connection.execute(
            "UPDATE scheduler_lease SET holder = NULL, expires_at = ? "
            "WHERE name = ? AND holder = ? AND token = ?",
            [values.to_us(now), name, holder, token],
        ).rowcount
        > 0
    )


# ------------------------------------------------------------------ fences


def check_fence(connection: Connection, fence: Fence) -> None:
    """LeaseLost if ``fence``'s lease has been granted again since (or never was)."""
    check_token(fence, _lease_token(connection, fence.lease))


def lease_tokens(connection: Connection, fences: Iterable[Fence | None]) -> dict[str, int | None]:
    """The current token of every lease ``fences`` name: one query per lease."""
    tokens: dict[str, int | None] = {}
    for fence in fences:
        if fence is not None and fence.lease not in tokens:
            tokens[fence.lease] = _lease_token(connection, fence.lease)
    return tokens


def check_token(fence: Fence, token: int | None) -> None:
    """LeaseLost unless ``token`` (None: never granted) is still ``fence``'s."""
    if token != fence.token:
        current = "never granted" if token is None else f"now at token {token}"
        raise LeaseLost(f"lease {fence.lease!r} token {fence.token} is stale ({current})")


def _lease_token(connection: Connection, lease: str) -> int | None:
    token = scalar(connection, "SELECT token FROM scheduler_lease WHERE name = ?", [lease])
    return None if token is None else int(token)
