"""Asking actors over the bus in tests (not collected): the reply's payload, or the refusal."""

from __future__ import annotations

from typing import Any

import pytest

from bus import BusClient, RemoteError


class Asking:
    """Mixed into a test rig that has a started ``client``."""

    client: BusClient

    async def ask(self, topic: str, **payload: Any) -> dict[str, Any]:
        reply = await self.client.ask(topic, payload, timeout=10)
        return dict(reply.payload)

    async def refused(self, topic: str, **payload: Any) -> RemoteError:
        with pytest.raises(RemoteError) as caught:
            await self.client.ask(topic, payload, timeout=10)
        return caught.value
