"""A store in a child process, for the crash tests (not collected: it holds no tests).

``python -m tests.store.child <db path> burst <writers>``: record executions from ``writers``
concurrent tasks, forever, printing ``ack <task id> <n>`` once each is acknowledged.
``python -m tests.store.child <db path> die-after <count>``: record ``count`` executions one at a
time, then SIGKILL itself (leaving its write-ahead log behind).

The master key comes from ``TASKBUS_MASTER_KEY``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from store import LibsqlStore, NewExecution

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def execution(task_id: str, n: int) -> NewExecution:
    instant = T0 + timedelta(seconds=n)
    return NewExecution(task_id=task_id, scheduled_at=instant, started_at=instant)


async def burst(store: LibsqlStore, writers: int) -> None:
    async def writer(task_id: str) -> None:
        n = 0
        while True:
            await store.record_execution(execution(task_id, n))
            sys.stdout.write(f"ack {task_id} {n}\n")
            sys.stdout.flush()
            n += 1

    await asyncio.gather(*(writer(f"crash.writer{i}") for i in range(writers)))


async def die_after(store: LibsqlStore, count: int) -> None:
    for n in range(count):
        await store.record_execution(execution("crash.single", n))
    sys.stdout.write("done\n")
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


async def main(path: Path, mode: str, number: int) -> None:
    store = LibsqlStore(path)
    await store.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if mode == "burst":
        await burst(store, number)
    else:
        await die_after(store, number)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])))
