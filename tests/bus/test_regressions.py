"""Regressions found by review: each test fails on the code before its fix."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bus import AuthError, Broker, KeysDirectory, RemoteError, wire
from tests.bus.raw import RawPeer, envelope, pack
from tests.conftest import ClientFactory


async def test_a_resent_work_item_is_held_once_and_credit_is_not_leaked(
    broker: Broker, keys: KeysDirectory, make_client: ClientFactory
) -> None:
    worker = await make_client("worker")
    consumer = await worker.consume("jobs.dup", credit=2)
    producer = RawPeer.to_broker(broker, keys, "inproc", "producer")
    try:
        await producer.hello("producer")
        item = envelope(topic="jobs.dup", id=b"\x01" * 16)
        await producer.send(wire.ENQUEUE, pack([item]))
        await producer.send(wire.ENQUEUE, pack([item]))  # re-sent after a "reconnect"
        first = await consumer.get(timeout=5)
        first.ack()
        # Both credits are free again: two new items are delivered before any ack.
        fresh = [envelope(topic="jobs.dup", id=bytes([2, n]) * 8) for n in range(2)]
        await producer.send(wire.ENQUEUE, pack(fresh))
        second, third = await consumer.get(timeout=5), await consumer.get(timeout=5)
        assert first.envelope.id == b"\x01" * 16
        assert {second.envelope.id, third.envelope.id} == {bytes([2, n]) * 8 for n in range(2)}
        assert broker.stats()["counters"]["duplicate_enqueues"] == 1
    finally:
        producer.close()


async def test_requests_sent_right_after_serve_is_acknowledged_are_served(
    make_client: ClientFactory,
) -> None:
    """The broker may route a request before the SERVE ack reaches the client."""
    server = await make_client("server")
    askers = [await make_client(f"asker{n}") for n in range(5)]
    serving = asyncio.create_task(server.serve("race."))
    replies = asyncio.gather(
        *(a.ask("race.q", timeout=5) for a in askers for _ in range(5)), return_exceptions=True
    )
    inbox = await serving

    async def answer() -> None:
        async for request in inbox:
            server.reply(request, {"ok": True})

    answering = asyncio.create_task(answer())
    try:
        results = await replies
    finally:
        answering.cancel()
    busy = [r for r in results if isinstance(r, RemoteError) and r.code == "busy"]
    assert busy == []


async def test_a_lost_responder_is_counted_and_logged(
    broker: Broker, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    server = await make_client("server")
    await server.serve("gone.")
    asker = await make_client("asker")
    asking = asyncio.create_task(asker.ask("gone.q", timeout=5))
    await asyncio.sleep(0)  # let the request leave before the responder does
    await server.stop()
    with pytest.raises(RemoteError) as refused:
        await asking
    assert refused.value.code == "responder_lost"
    assert broker.stats()["errors"]["responder_lost"] == 1
    assert "bus.reject code=responder_lost" in caplog.text


def test_keys_new_does_not_admit_the_identity_locally(tmp_path: Path) -> None:
    keys = KeysDirectory(tmp_path / "keys")
    keys.identity_keypair("joiner", create=True, allow=False)
    assert keys.allowed() == {}


def test_trusting_a_foreign_broker_key_never_clobbers_a_local_broker(tmp_path: Path) -> None:
    keys = KeysDirectory(tmp_path / "keys")
    own = keys.broker_keypair(create=True)
    with pytest.raises(AuthError, match="own broker keypair"):
        keys.trust_broker(b"x" * 40)
    assert keys.broker_public_key() == own.public


async def test_the_client_learns_its_registered_identity(
    make_client: ClientFactory,
) -> None:
    client = await make_client("alice", "tcp")
    assert client.stats()["registered_identity"] == "alice"
