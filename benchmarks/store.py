"""What the encrypted store sustains: durable writes with and without group commit, and history.

Run ``python benchmarks/store.py [--quick]`` from the repository root. It prints a table and, as
its last line, one JSON object (``group_commit_records_s``, ``per_row_commit_records_s``,
``history_query_p99_ms`` and the details).

Everything goes through ``LibsqlStore``'s Python API in this process (not over the bus), on real
encrypted files (aes256cbc) in a temporary directory (``--dir`` to choose one: the file system
decides what an fsync costs), in WAL mode with ``synchronous = FULL`` unless
``--synchronous normal``:

- **group commit**: ``--writers`` coroutines (64), each with a task of its own, record finished
  executions (with a ~200-byte result) one after the other, each awaiting its acknowledgement
  (which comes only once its group is committed) before the next; the store's thread commits
  whatever is waiting as one transaction. Rate = records / time to the last acknowledgement;
  afterwards the rows are counted in the file.
- **one commit per record**: the same code path with ``max_batch = 1``, so every record is its
  own transaction and fsync: the only difference is grouping.
- **history**: a table of ``--rows`` executions (quick 100,000, full 1,000,000) over 100 tasks,
  bulk-loaded; then sequential ``history(task, limit=50)`` calls, alternating the newest page of a
  random task and the page after a random cursor taken from deeper in the table. Latency includes
  the hop to the store's thread and decoding the rows.

During the write phases a probe coroutine sleeps 1 ms at a time and records how late it wakes:
libsql holds the GIL during each call, so the event loop stalls while a statement or a commit
runs; ``loop_lag_*`` shows by how much. ``group_us_per_record`` is the store thread's time in
its groups (the statements and the batches' Python, and COMMIT), ``commit_us_per_record`` the
part in COMMIT alone (writing the log, fsync, checkpoints; one libsql call, GIL held throughout);
what remains of ``1e6 / records_s`` is mostly the event loop's side (building records, futures,
waking the writers), which cannot overlap the thread's SQL since libsql holds the GIL.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from benchmarks._measure import BenchError, percentile, print_aligned  # noqa: E402
from config.store import StoreSettings  # noqa: E402
from store import (  # noqa: E402
    ExecutionOutcome,
    LibsqlStore,
    MasterKey,
    NewExecution,
    retention,
)
from store._sql import Connection  # noqa: E402

T0 = datetime(2024, 1, 1, tzinfo=UTC)
T0_US = int(T0.timestamp()) * 1_000_000
RESULT = {"summary": "x" * 200}
TASKS = 100
PAGE = 50
LOAD_CHUNK = 50_000


@dataclass(frozen=True, slots=True)
class Plan:
    group_records: int
    per_row_records: int
    history_rows: int
    queries: int
    writers: int = 64


QUICK = Plan(group_records=20_000, per_row_records=2_000, history_rows=100_000, queries=2_000)
FULL = Plan(group_records=100_000, per_row_records=10_000, history_rows=1_000_000, queries=10_000)


class LagProbe:
    """Sleeps 1 ms at a time and records how late each wake-up is (ms)."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            self.lags_ms.append((time.perf_counter() - started - 0.001) * 1e3)

    def __enter__(self) -> LagProbe:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> dict[str, float]:
        lags = sorted(self.lags_ms) or [0.0]
        return {
            "loop_lag_p50_ms": round(percentile(lags, 0.5), 3),
            "loop_lag_p99_ms": round(percentile(lags, 0.99), 3),
            "loop_lag_max_ms": round(lags[-1], 3),
        }


def finished(task_id: str, n: int) -> NewExecution:
    started = T0 + timedelta(seconds=n)
    return NewExecution(
        task_id=task_id,
        scheduled_at=started,
        started_at=started,
        outcome=ExecutionOutcome(
            completed_at=started + timedelta(milliseconds=250), success=True, result=RESULT
        ),
    )


async def open_store(directory: Path, name: str, settings: StoreSettings) -> LibsqlStore:
    store = LibsqlStore(
        directory / f"{name}.db", master_key=MasterKey.generate(), environ={}, settings=settings
    )
    await store.start()
    return store


async def write_rate(
    directory: Path, name: str, plan: Plan, *, records: int, max_batch: int, synchronous: str
) -> dict[str, Any]:
    settings = StoreSettings(max_batch=max_batch, synchronous=synchronous)
    store = await open_store(directory, name, settings)
    per_writer = records // plan.writers

    async def writer(index: int) -> None:
        for n in range(per_writer):
            await store.record_execution(finished(f"bench.writer{index}", n))

    try:
        with LagProbe() as probe:
            started = time.perf_counter()
            await asyncio.wait_for(asyncio.gather(*(writer(i) for i in range(plan.writers))), 600)
            elapsed = time.perf_counter() - started
        stats = store.worker.stats
        total = per_writer * plan.writers
        if stats.writes < total:
            raise BenchError(f"{name}: {stats.writes} writes committed, expected {total}")
        stored = await store.worker.read(retention.count_executions)
        if stored != total:
            raise BenchError(f"{name}: {stored} executions in the file, expected {total}")
        return {
            "writers": plan.writers,
            "records": total,
            "seconds": round(elapsed, 3),
            "records_s": round(total / elapsed),
            "commits": stats.commits,
            "mean_group": round(stats.writes / max(stats.commits, 1), 1),
            "largest_group": stats.largest_group,
            "group_us_per_record": round(stats.group_seconds / total * 1e6, 1),
            "commit_us_per_record": round(stats.commit_seconds / total * 1e6, 1),
            **probe.summary(),
        }
    finally:
        await store.close()


def _load(rows: list[tuple[Any, ...]], connection: Connection) -> int:
    connection.executemany(
        "INSERT INTO task_executions (execution_id, task_id, scheduled_at, started_at, "
        "completed_at, success, duration_seconds, error_message, retry_count, idempotency_key) "
        "VALUES (?, ?, ?, ?, ?, 1, 0.25, NULL, 0, ?)",
        rows,
    )
    return len(rows)


async def history_latency(directory: Path, plan: Plan, synchronous: str) -> dict[str, Any]:
    store = await open_store(directory, "history", StoreSettings(synchronous=synchronous))
    try:
        started = time.perf_counter()
        for first in range(0, plan.history_rows, LOAD_CHUNK):
            chunk = []
            for n in range(first, min(first + LOAD_CHUNK, plan.history_rows)):
                task_id = f"bench.task{n % TASKS:03d}"
                micros = T0_US + n * 1_000_000
                chunk.append(
                    (f"{n:016d}", task_id, micros, micros, micros + 250_000, f"{task_id}@{micros}")
                )
            await store.worker.write(partial(_load, chunk))
        load_s = time.perf_counter() - started

        rng = random.Random(7)
        pool: list[str] = []
        for task in rng.sample(range(TASKS), 10):  # cursors from all depths of ten tasks
            cursor: str | None = None
            for _ in range(plan.history_rows // TASKS // PAGE):
                page = await store.history(f"bench.task{task:03d}", before=cursor, limit=PAGE)
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
                pool.append(cursor)
        latencies: list[float] = []
        empty = 0
        for i in range(plan.queries):
            task_id = f"bench.task{rng.randrange(TASKS):03d}"
            before = rng.choice(pool) if i % 2 else None
            if before is not None:
                task_id = f"bench.task{int(before.split(':')[0]) // 1_000_000 % TASKS:03d}"
            began = time.perf_counter()
            page = await store.history(task_id, before=before, limit=PAGE)
            latencies.append((time.perf_counter() - began) * 1e3)
            empty += not page.items
        latencies.sort()
        return {
            "rows": plan.history_rows,
            "rows_per_task": plan.history_rows // TASKS,
            "load_s": round(load_s, 2),
            "queries": plan.queries,
            "empty_pages": empty,
            "p50_ms": round(percentile(latencies, 0.5), 3),
            "p99_ms": round(percentile(latencies, 0.99), 3),
            "max_ms": round(latencies[-1], 3),
            "file_mb": round(files_mb(directory, "history.db"), 1),
        }
    finally:
        await store.close()


def files_mb(directory: Path, name: str) -> float:
    """The size of a database with its write-ahead log (most rows may still be in the log)."""
    return sum(path.stat().st_size for path in directory.glob(f"{name}*")) / 1e6


def filesystem_of(path: Path) -> str:
    """The file system type of ``path`` from /proc/mounts (Linux), else "unknown"."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    best, kind = "", "unknown"
    resolved = str(path.resolve())
    for line in mounts:
        fields = line.split()
        if len(fields) > 2 and resolved.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return kind


async def run_all(plan: Plan, directory: Path, synchronous: str) -> dict[str, Any]:
    group = await write_rate(
        directory, "group", plan, records=plan.group_records, max_batch=512, synchronous=synchronous
    )
    per_row = await write_rate(
        directory,
        "per_row",
        plan,
        records=plan.per_row_records,
        max_batch=1,
        synchronous=synchronous,
    )
    history = await history_latency(directory, plan, synchronous)
    return {"group_commit": group, "per_row_commit": per_row, "history": history}


def _thread(phase: dict[str, Any]) -> str:
    return (
        f"per record {phase['group_us_per_record']} µs on the store thread, "
        f"{phase['commit_us_per_record']} of them in COMMIT; loop lag p99 "
        f"{phase['loop_lag_p99_ms']} ms max {phase['loop_lag_max_ms']} ms"
    )


def print_table(summary: dict[str, Any]) -> None:
    group, per_row, history = (summary[k] for k in ("group_commit", "per_row_commit", "history"))
    rows = [
        (
            "durable records/s, group commit",
            f"{group['records_s']:,}",
            f"{group['records']:,} records from {group['writers']} writers, "
            f"{group['commits']:,} commits (mean group {group['mean_group']}); {_thread(group)}",
        ),
        (
            "durable records/s, one commit each",
            f"{per_row['records_s']:,}",
            f"{per_row['records']:,} records, {per_row['commits']:,} commits; {_thread(per_row)}",
        ),
        (
            "history page p50 / p99 (ms)",
            f"{history['p50_ms']} / {history['p99_ms']}",
            f"{history['queries']:,} pages of {PAGE} on {history['rows']:,} rows "
            f"({history['rows_per_task']:,} per task, {history['file_mb']} MB), "
            f"max {history['max_ms']} ms",
        ),
    ]
    print_aligned(("measurement", "value", "detail"), rows)
    print(
        f"\n{summary['mode']} mode, {summary['seconds']} s, synchronous={summary['synchronous']},"
        f" {summary['filesystem']} in {summary['directory']}, {summary['cpus']} cpus; "
        f"group commit is {summary['group_vs_per_row']}x one commit per record"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (< 30 s)")
    parser.add_argument("--rows", type=int, default=None, help="rows of the history table")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    parser.add_argument("--synchronous", choices=("full", "normal"), default="full")
    parser.add_argument("--writers", type=int, default=64, help="concurrent writers (64)")
    args = parser.parse_args(argv)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    plan = replace(plan, history_rows=args.rows or plan.history_rows, writers=args.writers)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="taskbus-bench-", dir=args.dir) as scratch:
        directory = Path(scratch)
        try:
            measured = asyncio.run(run_all(plan, directory, args.synchronous))
        except (BenchError, TimeoutError) as exc:
            print(f"benchmark failed: {exc!r}", file=sys.stderr)
            print(json.dumps({"benchmark": "taskbus.store", "mode": mode, "error": repr(exc)}))
            return 1
        filesystem = filesystem_of(directory)
    group, per_row = measured["group_commit"], measured["per_row_commit"]
    summary: dict[str, Any] = {
        "benchmark": "taskbus.store",
        "mode": mode,
        "synchronous": args.synchronous,
        "directory": str(directory.parent),
        "filesystem": filesystem,
        "cpus": os.cpu_count(),
        "group_commit_records_s": group["records_s"],
        "per_row_commit_records_s": per_row["records_s"],
        "group_vs_per_row": round(group["records_s"] / max(per_row["records_s"], 1), 1),
        "history_query_p50_ms": measured["history"]["p50_ms"],
        "history_query_p99_ms": measured["history"]["p99_ms"],
        **measured,
        "seconds": round(time.monotonic() - started, 1),
    }
    print_table(summary)
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
