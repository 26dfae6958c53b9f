"""A tiny actor used by docs/deployment.md: the same class runs in every deployment."""

from __future__ import annotations

from actors import Actor, on_request
from bus import Envelope
from bus.envelope import Payload


class Greeter(Actor):
    name = "greeter"

    @on_request("greeter.")
    async def greet(self, request: Envelope) -> Payload:
        who = request.payload.get("name", "world")
        return {"greeting": f"hello {who}", "from": self.identity}
