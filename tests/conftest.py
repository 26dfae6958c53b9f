"""Shared fixtures: a real broker on inproc, tcp+CURVE and ipc+CURVE, with real keys on disk."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bus import Broker, BusClient, KeysDirectory
from config import AclRule, BusSettings
from config.bus import default_roles

TRANSPORTS = ("inproc", "tcp", "ipc")
ClientFactory = Callable[..., Awaitable[BusClient]]
# The bus's own contract (routing, liveness, bad input) holds whatever the ACL: its tests run with
# every action open to every admitted identity. The default, least-privilege rules have tests of
# their own (tests/bus/test_security.py, tests/e2e/test_privilege.py).
OPEN_ACL = (AclRule(identity="*", action="*", prefix="", allow=True),)
# The identity the actor tests ask as, made an admin beside the default ones: it manages the
# code-defined tasks as the CLI would. Owner tests use other identities.
TESTER = "tester"
TEST_ROLES = {**default_roles(), "admin": ("cli", "app", TESTER)}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A tcp port another process (here: this one) listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


@pytest.fixture
def keys(tmp_path: Path) -> KeysDirectory:
    directory = KeysDirectory(tmp_path / "keys")
    directory.broker_keypair(create=True)
    return directory


@pytest.fixture
def settings() -> BusSettings:
    """Short liveness so that dead peers are found within a second in tests."""
    return BusSettings(
        heartbeat_interval_s=0.1, heartbeat_liveness=3, ask_timeout_s=3.0, acl=OPEN_ACL
    )


async def start_broker(
    keys: KeysDirectory, settings: BusSettings, tmp_path: Path, name: str = "broker"
) -> Broker:
    """A started broker on inproc, tcp+CURVE (a free port) and ipc+CURVE (under ``tmp_path``)."""
    instance = Broker(
        settings=settings,
        keys=keys,
        endpoints=["tcp://127.0.0.1:0", f"ipc://{tmp_path}/{name}.sock"],
        inproc_name=f"taskbus-{name}-{id(tmp_path)}",
    )
    await instance.start()
    return instance


async def start_client(
    broker: Broker,
    keys: KeysDirectory,
    settings: BusSettings,
    identity: str,
    transport: str = "inproc",
    **kwargs: Any,
) -> BusClient:
    """A started client; remote identities get a keypair created and allow-listed on first use."""
    if transport == "inproc":
        client = BusClient(
            broker.inproc_endpoint,
            identity=identity,
            context=broker.context,
            settings=settings,
            **kwargs,
        )
    else:
        client = BusClient(
            endpoint_for(broker, transport),
            identity=identity,
            keypair=keys.identity_keypair(identity, create=True),
            server_key=keys.broker_public_key(),
            settings=settings,
            **kwargs,
        )
    await client.start()
    return client


@pytest.fixture
async def broker(
    keys: KeysDirectory, settings: BusSettings, tmp_path: Path
) -> AsyncIterator[Broker]:
    instance = await start_broker(keys, settings, tmp_path)
    yield instance
    await asyncio.wait_for(instance.stop(), 5)


def endpoint_for(broker: Broker, transport: str) -> str:
    if transport == "inproc":
        return broker.inproc_endpoint
    return next(e for e in broker.endpoints if e.startswith(f"{transport}://"))


@pytest.fixture
async def make_client(
    broker: Broker, keys: KeysDirectory, settings: BusSettings
) -> AsyncIterator[ClientFactory]:
    """``await make_client("alice", "tcp")``: a started client; all are stopped at teardown.

    Remote identities get a keypair created and allow-listed on first use.
    """
    clients: list[BusClient] = []

    async def factory(identity: str, transport: str = "inproc", **kwargs: Any) -> BusClient:
        client = await start_client(broker, keys, settings, identity, transport, **kwargs)
        clients.append(client)
        return client

    yield factory
    for client in reversed(clients):
        await asyncio.wait_for(client.stop(), 5)


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    """Runs a test once per transport: the same contract over inproc, tcp+CURVE and ipc+CURVE."""
    return str(request.param)
