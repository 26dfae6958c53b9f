"""Fixtures of the actor tests: embedded actor systems on a real broker, and bus clients to poke
them with.

Every system listens on inproc and on tcp+CURVE (a free port, real keys in ``tmp_path``). Test
clients on ``inproc`` share the broker's ZeroMQ context, so they must be stopped before the system
is (the fixture does that at teardown); a test that stops the system itself while its clients are
still connected uses ``tcp`` clients, which have their own context.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from actors import ActorSystem
from bus import BusClient, KeysDirectory
from config import BusSettings
from config.actors import ActorSettings
from tests.conftest import OPEN_ACL, endpoint_for, start_client

SystemFactory = Callable[..., Awaitable[ActorSystem]]
ClientFactory = Callable[..., Awaitable[BusClient]]


@pytest.fixture
def bus_settings() -> BusSettings:
    return BusSettings(ask_timeout_s=5.0, acl=OPEN_ACL)


@pytest.fixture
def actor_settings() -> ActorSettings:
    """Fast restarts; liveness every second (an actor counts as gone after 3 s of silence)."""
    return ActorSettings(
        restart_backoff_s=0.01,
        restart_backoff_max_s=0.5,
        shutdown_deadline_s=2.0,
        liveness_interval_s=1.0,
    )


@pytest.fixture
async def make_system(
    keys: KeysDirectory, bus_settings: BusSettings, actor_settings: ActorSettings
) -> AsyncIterator[SystemFactory]:
    """``await make_system(settings=...)``: an embedded system, stopped at teardown."""
    systems: list[ActorSystem] = []

    async def factory(**overrides: Any) -> ActorSystem:
        options: dict[str, Any] = {
            "settings": actor_settings,
            "bus_settings": bus_settings,
            "keys": keys,
            "endpoints": ["tcp://127.0.0.1:0"],
            "name": f"system{len(systems) + 1}",
            **overrides,
        }
        system = await ActorSystem.embedded(**options)
        systems.append(system)
        return system

    yield factory
    for system in reversed(systems):
        await asyncio.wait_for(system.stop(deadline_s=1.0), 10)


@pytest.fixture
async def system(make_system: SystemFactory) -> ActorSystem:
    return await make_system()


@pytest.fixture
async def make_client(
    system: ActorSystem, keys: KeysDirectory, bus_settings: BusSettings
) -> AsyncIterator[ClientFactory]:
    """``await make_client("tester", "tcp")``: a client of ``system``'s broker (inproc default).

    Requested after ``system``, so torn down before it.
    """
    clients: list[BusClient] = []
    assert system.broker is not None

    async def factory(identity: str, transport: str = "inproc") -> BusClient:
        assert system.broker is not None
        client = await start_client(system.broker, keys, bus_settings, identity, transport)
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        await asyncio.wait_for(client.stop(), 5)


@pytest.fixture
async def connect_system(
    system: ActorSystem,
    keys: KeysDirectory,
    bus_settings: BusSettings,
    actor_settings: ActorSettings,
) -> AsyncIterator[SystemFactory]:
    """``await connect_system("workers", "slow")``: an ``ActorSystem.connected`` to ``system``'s
    broker over tcp+CURVE, as ``taskbus actor`` runs one, with keypairs made and allowed for its
    own identity and the actor identities named. Its broker outlives it, so a test can watch what
    its stop leaves behind.
    """
    systems: list[ActorSystem] = []
    assert system.broker is not None
    endpoint = endpoint_for(system.broker, "tcp")

    async def factory(name: str, *identities: str, **overrides: Any) -> ActorSystem:
        for identity in (name, *identities):
            keys.identity_keypair(identity, create=True)
        options: dict[str, Any] = {
            "settings": actor_settings,
            "bus_settings": bus_settings,
            "name": name,
            **overrides,
        }
        connected = await ActorSystem.connected(endpoint, keys, **options)
        systems.append(connected)
        return connected

    yield factory
    for connected in reversed(systems):
        await asyncio.wait_for(connected.stop(deadline_s=1.0), 10)
