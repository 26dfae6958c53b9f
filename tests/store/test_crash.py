"""Crash safety: a store in a real child process is SIGKILLed in the middle of a burst of
concurrent writes; reopened, it holds every write it acknowledged and passes integrity_check.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from store import MASTER_KEY_ENV, MasterKey
from tests.store.child import T0
from tests.store.conftest import StoreFactory

ROOT = Path(__file__).resolve().parents[2]
WRITERS = 8


async def acknowledged_before_kill(db_path: Path, key: MasterKey, kill_after: int) -> set[str]:
    """Run the burst child, SIGKILL it after ``kill_after`` acknowledgements, and return every
    acknowledgement it printed before it died (``<task id> <n>``).
    """
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.store.child",
        str(db_path),
        "burst",
        str(WRITERS),
        cwd=ROOT,
        env={**os.environ, MASTER_KEY_ENV: key.secret.hex()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None
    acked: set[str] = set()
    try:
        ready = await asyncio.wait_for(child.stdout.readline(), 30)
        assert ready == b"ready\n", (ready, await child.stderr.read() if child.stderr else b"")
        while len(acked) < kill_after:
            line = await asyncio.wait_for(child.stdout.readline(), 30)
            assert line.startswith(b"ack "), line
            acked.add(line.decode().removeprefix("ack ").strip())
        child.send_signal(signal.SIGKILL)
        rest, _ = await asyncio.wait_for(child.communicate(), 30)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
    assert child.returncode == -signal.SIGKILL
    for text in rest.decode().splitlines():
        if text.startswith("ack "):  # a line cut by the kill is not an acknowledgement
            acked.add(text.removeprefix("ack ").strip())
    return acked


@pytest.mark.parametrize("kill_after", [1, 300, 3000])
async def test_every_acknowledged_write_survives_a_sigkill(
    make_store: StoreFactory, db_path: Path, kill_after: int
) -> None:
    key = MasterKey.generate()
    acked = await acknowledged_before_kill(db_path, key, kill_after)
    assert len(acked) >= kill_after
    assert (db_path.parent / "taskbus.db-wal").exists()  # it died with its log open

    store = await make_store(master_key=key)
    assert await store.integrity_check() == ["ok"]
    stored: set[str] = set()
    for writer in range(WRITERS):
        task_id = f"crash.writer{writer}"
        cursor = None
        while True:
            page = await store.history(task_id, before=cursor, limit=1000)
            stored.update(
                f"{task_id} {int((run.scheduled_at - T0).total_seconds())}" for run in page.items
            )
            if (cursor := page.next_cursor) is None:
                break
    assert acked - stored == set()
    # each writer waits for one write at a time: at most one committed, unacknowledged write
    # per writer, and no holes in any writer's sequence
    assert len(stored - acked) <= WRITERS
    for writer in range(WRITERS):
        numbers = {int(s.split()[1]) for s in stored if s.startswith(f"crash.writer{writer} ")}
        assert numbers == set(range(len(numbers)))
