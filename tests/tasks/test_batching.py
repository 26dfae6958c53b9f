"""What the executor's runs ask the store in one turn of the loop goes as one request; the
machine's load is read from /proc at most once per interval, however many runs start."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from actors.executing.batching import RETRY_PAUSE_S, StoreBatch
from actors.executing.resources import SystemProbe
from bus import RemoteError
from bus.errors import remote_error
from scheduler import FakeClock
from store.errors import InvalidValue
from tests.bus.waits import eventually


async def test_items_submitted_in_one_turn_go_in_one_request_each_with_its_answer() -> None:
    sent: list[list[int]] = []

    async def send(items: list[int]) -> list[int | BaseException]:
        sent.append(items)
        return [RemoteError("not_found", f"{i}") if i == 3 else i * 10 for i in items]

    batch: StoreBatch[int, int] = StoreBatch(send, limit=4)
    futures = [batch.submit(i) for i in range(6)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert sent == [[0, 1, 2, 3], [4, 5]]  # at most ``limit`` per request
    assert results[:3] == [0, 10, 20]
    assert results[4:] == [40, 50]
    assert isinstance(results[3], RemoteError)  # its own failure, the others answered
    assert await batch.submit(7) == 70  # a later turn: a request of its own
    assert sent[-1] == [7]


async def test_a_busy_store_is_asked_again_and_other_errors_fail_the_whole_batch() -> None:
    tries: list[list[str]] = []

    async def send(items: list[str]) -> list[str | BaseException]:
        tries.append(items)
        if len(tries) == 1:
            raise remote_error("busy", "store cannot take it now")  # as the bus client makes it
        if "denied" in items:
            raise remote_error("denied", "'executor-x' may not ask 'store.execution.finish_many'")
        if "bad" in items:
            raise InvalidValue("executions[0]", "bad")  # the store's own refusal
        return [item.upper() for item in items]

    clock = FakeClock(datetime(2024, 5, 1, tzinfo=UTC))
    batch: StoreBatch[str, str] = StoreBatch(send, limit=10, clock=clock)
    both = asyncio.gather(batch.submit("a"), batch.submit("b"))
    await eventually(lambda: clock.next_timer_s is not None, "the batch pauses to ask again")
    clock.advance(RETRY_PAUSE_S)
    assert await both == ["A", "B"]
    assert tries[:2] == [["a", "b"], ["a", "b"]]
    with pytest.raises(InvalidValue, match=r"executions\[0\]: bad"):
        await batch.submit("bad")
    tried = len(tries)
    with pytest.raises(RemoteError, match="denied"):  # a refusal asking again cannot cure
        await batch.submit("denied")
    assert len(tries) == tried + 1


async def test_requests_are_cut_by_estimated_size() -> None:
    sent: list[list[bytes]] = []

    async def send(items: list[bytes]) -> list[int | BaseException]:
        sent.append(items)
        return [len(item) for item in items]

    batch: StoreBatch[bytes, int] = StoreBatch(send, limit=100, max_bytes=10, size=len)
    await asyncio.gather(*(batch.submit(b"x" * 4) for _ in range(5)))
    assert [len(items) for items in sent] == [2, 2, 1]


def _proc(root: Path, idle: int, total_busy: int) -> None:
    (root / "stat").write_text(f"cpu  {total_busy} 0 0 {idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (root / "meminfo").write_text("MemTotal: 1000 kB\nMemAvailable: 250 kB\n")


def test_the_system_probe_keeps_a_reading_for_its_interval(tmp_path: Path) -> None:
    now = [0.0]
    probe = SystemProbe(tmp_path, min_interval_s=1.0, clock=lambda: now[0])
    _proc(tmp_path, idle=100, total_busy=100)
    first = probe.load()
    assert first.memory_percent == 75.0
    _proc(tmp_path, idle=100, total_busy=200)  # fully busy since
    now[0] = 0.5
    assert probe.load() == first  # not read again within the interval
    now[0] = 1.0
    assert probe.load().cpu_percent == 100.0
