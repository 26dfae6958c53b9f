"""Bearer tokens, the bus identity each maps to, and the client a request acts through.

SEAM (owned by the REST helper; metrics and dashboard use only ``Caller`` and ``authenticated``).
"""

from __future__ import annotations

from dataclasses import dataclass

from taskbus.client import TaskbusClient


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request acts as: the token's identity, and a bus client connected as it."""

    identity: str
    client: TaskbusClient


class TokenBook:
    """Tokens stored hashed in the keys directory (to be built)."""


class Clients:
    """One bus client per identity, connected on first use (to be built)."""


async def authenticated() -> Caller:  # FastAPI dependency: Depends(authenticated)
    raise NotImplementedError
