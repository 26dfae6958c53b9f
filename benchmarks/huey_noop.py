"""The Huey app ``benchmarks/peers.py`` measures: one no-op task on ``SqliteHuey``.

The benchmark enqueues from its own process, then starts the consumer as a process of its own,
``python -m huey.bin.huey_consumer benchmarks.huey_noop.huey -k thread -w <W>`` from the
repository root. Both read the database file from ``PEERS_HUEY_DB``. The storage is Huey's
``SqliteStorage`` with its defaults (WAL journal) and ``fsync=True`` (``synchronous = FULL``,
SQLite's own default, said explicitly); results go to Huey's default result store, the ``kv``
table of the same file. Huey stores no ``None`` result by default, so the task returns ``True``:
every run leaves a stored result.

Each consumer worker notes when it started (``on_startup``) in ``PEERS_HUEY_DB + ".started"``,
one ``time.time()`` a line: the benchmark times the drain from the first of them, so the
consumer's imports are not in the timed span.
"""

from __future__ import annotations

import os
import time

from huey import SqliteHuey

_DB = os.environ.get("PEERS_HUEY_DB", "huey.db")

huey = SqliteHuey("peers", filename=_DB, fsync=True)


@huey.on_startup()
def _started() -> None:
    with open(_DB + ".started", "a") as stamps:
        stamps.write(f"{time.time()!r}\n")


@huey.task()
def noop() -> bool:
    return True
