"""A work queue holds at most ``max_queue_items`` items and ``max_queue_bytes`` bytes (waiting or
delivered and not yet acknowledged): past either, an enqueue is refused ``queue_full`` with the
limits named, nothing of it is kept, and room made by an acknowledgement is usable again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bus import Broker, BusClient, KeysDirectory, RemoteError
from config import BusSettings
from tests.conftest import OPEN_ACL, start_broker, start_client

QUEUE = "jobs.bounded"


async def bounded(
    keys: KeysDirectory, tmp_path: Path, **limits: int
) -> AsyncIterator[tuple[Broker, BusClient]]:
    settings = BusSettings(ask_timeout_s=3.0, acl=OPEN_ACL, **limits)
    broker = await start_broker(keys, settings, tmp_path, "bounded")
    producer = await start_client(broker, keys, settings, "producer", "tcp")
    try:
        yield broker, producer
    finally:
        await asyncio.wait_for(producer.stop(), 5)
        await asyncio.wait_for(broker.stop(), 5)


@pytest.fixture
async def by_items(keys: KeysDirectory, tmp_path: Path) -> AsyncIterator[tuple[Broker, BusClient]]:
    async for pair in bounded(keys, tmp_path, max_queue_items=5):
        yield pair


async def test_a_queue_full_of_items_refuses_more_until_one_is_acknowledged(
    by_items: tuple[Broker, BusClient], keys: KeysDirectory
) -> None:
    broker, producer = by_items
    for n in range(5):
        await producer.enqueue(QUEUE, {"n": n}, timeout=5)
    with pytest.raises(RemoteError) as refused:
        await producer.enqueue(QUEUE, {"n": 5}, timeout=5)
    assert refused.value.code == "queue_full"
    assert f"queue '{QUEUE}' holds 5 items" in refused.value.reason
    assert "the limits are 5 items" in refused.value.reason
    stats = await producer.ask("bus.stats", timeout=5)
    assert stats.payload["queues"][QUEUE]["pending"] == 5  # the refused one is not kept
    assert stats.payload["errors"]["queue_full"] == 1

    consumer = await start_client(broker, keys, producer.settings, "worker", "inproc")
    work = await consumer.consume(QUEUE, credit=1)
    (await work.get(timeout=5)).ack()
    stats = await producer.ask("bus.stats", timeout=5)  # the ack has reached the broker
    await producer.enqueue(QUEUE, {"n": 6}, timeout=5)  # room again
    with pytest.raises(RemoteError):
        await producer.enqueue(QUEUE, {"n": 7}, timeout=5)
    await consumer.stop()


async def test_a_queue_full_of_bytes_refuses_more(keys: KeysDirectory, tmp_path: Path) -> None:
    async for _, producer in bounded(keys, tmp_path, max_queue_bytes=4096):
        blob = "x" * 1000
        for n in range(3):
            await producer.enqueue(QUEUE, {"n": n, "blob": blob}, timeout=5)
        with pytest.raises(RemoteError) as refused:
            await producer.enqueue(QUEUE, {"n": 3, "blob": blob}, timeout=5)
        assert refused.value.code == "queue_full"
        assert "and 4096 bytes (bus.max_queue_items, bus.max_queue_bytes)" in refused.value.reason
        held = (await producer.ask("bus.stats", timeout=5)).payload["queues"][QUEUE]
        assert held["pending"] == 3
        assert 3000 < held["held_bytes"] <= 4096
        await producer.enqueue(QUEUE, {"n": 4}, timeout=5)  # a small one still fits
