"""Clients handed to the host application are the system's to close on stop."""

from __future__ import annotations

import asyncio

import pytest

from actors import ActorSystem
from bus import AuthError, BusClient, KeysDirectory


async def test_stop_closes_a_client_the_host_forgot() -> None:
    system = await ActorSystem.embedded()
    client = await system.client("host-app")
    # Before: broker.stop() blocked forever in context.term() on the open inproc socket.
    report = await asyncio.wait_for(system.stop(), 10)
    assert report.clean
    assert client.stats()["registered"] is False


async def test_a_failed_start_releases_the_client_context(keys: KeysDirectory) -> None:
    client = BusClient(
        "tcp://127.0.0.1:9",  # nothing listens: the HELLO is never answered
        identity="lost",
        keypair=keys.identity_keypair("lost", create=True),
        server_key=keys.broker_public_key(),
    )
    with pytest.raises(AuthError, match="not authorised or unreachable"):
        await client.start(timeout=0.2)
    assert client._context.closed  # the context it made for itself is terminated
