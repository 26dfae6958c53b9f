"""An actor for the tests that run ``taskbus actor tests.actors.sample:Remote`` as a child process.

Imported by that child (and by the tests), never collected: it holds no tests.
"""

from __future__ import annotations

import os

from actors import Actor, on_request
from bus import Envelope
from bus.envelope import Payload


class Remote(Actor):
    """Answers asks, asks an in-process actor back, and says goodbye when stopped."""

    name = "remote"

    @on_request("remote.echo")
    async def echo(self, request: Envelope) -> Payload:
        return {"echo": dict(request.payload), "asker": request.sender, "pid": os.getpid()}

    @on_request("remote.relay")
    async def relay(self, request: Envelope) -> Payload:
        answer = await self.ask("local.echo", {"from": "remote"}, timeout=5)
        await self.publish("remote.relayed", {"answer": dict(answer.payload)})
        return {"local_said": dict(answer.payload)}

    async def on_stop(self) -> None:
        await self.publish("remote.stopped", {"pid": os.getpid()})
