"""One routing layer: each request topic has its handler and its reader, declared together on the
actor; a family takes a declared prefix; an unknown topic in the actor's namespace, an unreadable
payload and the actor's own failures are answered with precise codes, and the actor keeps
serving.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from actors import Actor, ActorSystem, on_request
from actors.cell import RequestRoutes
from bus import Envelope, Refused, RemoteError
from bus.envelope import Payload
from tests.actors.conftest import ClientFactory
from tests.actors.kit import spawn_instance


class NotThere(LookupError):
    pass


@dataclass(frozen=True)
class Add:
    a: int
    b: int


def read_add(payload: Mapping[str, Any]) -> Add:
    unknown = set(payload) - {"a", "b"}
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]}: is not a field of this request")
    values = [payload.get(name) for name in ("a", "b")]
    if not all(isinstance(value, int) for value in values):
        raise ValueError("a, b: expected integers")
    return Add(*values)  # type: ignore[arg-type]


class Calculator(Actor):
    name = "calc"
    namespace = "calc."

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    @on_request("calc.add", read=read_add)
    async def add(self, request: Envelope, add: Add) -> Payload:
        self.reads += 1
        return {"sum": add.a + add.b}

    @on_request("calc.find")
    async def find(self, request: Envelope) -> Payload:
        raise NotThere(f"nothing called {request.payload.get('name')!r}")

    @on_request("calc.echo.")
    async def echo(self, request: Envelope) -> Payload:
        return {"topic": request.topic}

    @on_request("calc.echo.special")
    async def special(self, request: Envelope) -> Payload:
        return {"special": True}

    def refusal(self, error: Exception) -> Refused | None:
        if isinstance(error, NotThere):
            return Refused("not_found", str(error))
        return None


def test_routes_are_exact_unless_declared_a_family() -> None:
    routes = RequestRoutes(Calculator)
    assert routes.served == ("calc.",)  # the namespace holds every route: one registration
    assert routes.route("calc.add") is not None
    assert routes.route("calc.add.more") is None  # exact: no prefix match
    assert routes.route("calc.adder") is None
    family = routes.route("calc.echo.anything")
    assert family is not None
    assert family.method == "echo"
    special = routes.route("calc.echo.special")
    assert special is not None
    assert special.method == "special"
    assert routes.unknown("calc.sub") == "the calc does not answer 'calc.sub'"


async def test_each_topic_reaches_its_handler_with_its_request_read(
    system: ActorSystem, make_client: ClientFactory
) -> None:
    actor = await spawn_instance(system, Calculator)
    client = await make_client("asker")
    assert (await client.ask("calc.add", {"a": 2, "b": 3}, timeout=5)).payload == {"sum": 5}
    assert (await client.ask("calc.echo.x.y", {}, timeout=5)).payload == {"topic": "calc.echo.x.y"}
    assert (await client.ask("calc.echo.special", {}, timeout=5)).payload == {"special": True}

    with pytest.raises(RemoteError) as invalid:
        await client.ask("calc.add", {"a": 2, "b": "3"}, timeout=5)
    assert (invalid.value.code, invalid.value.reason) == ("invalid", "a, b: expected integers")
    with pytest.raises(RemoteError) as extra:
        await client.ask("calc.add", {"a": 2, "b": 3, "c": 4}, timeout=5)
    assert (extra.value.code, extra.value.reason) == (
        "invalid",
        "c: is not a field of this request",
    )
    assert actor.reads == 1  # the handler never ran on an unreadable request

    with pytest.raises(RemoteError) as unknown:
        await client.ask("calc.sub", {"a": 1}, timeout=5)
    assert (unknown.value.code, unknown.value.reason) == (
        "unknown_topic",
        "the calc does not answer 'calc.sub'",
    )
    with pytest.raises(RemoteError) as not_found:
        await client.ask("calc.find", {"name": "x"}, timeout=5)
    assert (not_found.value.code, not_found.value.reason) == ("not_found", "nothing called 'x'")

    # still serving after every refusal
    assert (await client.ask("calc.add", {"a": 1, "b": 1}, timeout=5)).payload == {"sum": 2}
