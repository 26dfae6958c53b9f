"""What an executor adds per task: empty tasks from dispatch to result stored, and their rate.

Run ``python benchmarks/tasks.py [--quick]`` from the repository root. It prints a table and, as
its last line, one JSON object.

One process, one event loop: an embedded ``ActorSystem`` with the store actor (a real encrypted
libSQL file, ``synchronous = FULL``) and the ``user`` executor, whose only task class returns at
once. The benchmark stands in for the scheduler: it records each execution in the store first (as
the scheduler does, outside the timing), then enqueues the dispatch on
``scheduler.task.dispatch.user`` as the identity ``scheduler`` and takes the result the executor
queues on ``scheduler.task.result`` once the outcome is committed. Per task the executor asks the
store whether the execution already finished, runs the task, commits its outcome, queues the
result, acknowledges the dispatch and publishes three status events.

- **latency**: one task at a time; from the enqueue to the result's arrival (result stored).
- **throughput**: ``--tasks`` dispatches enqueued at once, executor concurrency 64; tasks per
  second from the first enqueue to the last result, every result durably stored.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from actors import ActorSystem  # noqa: E402
from actors.executing import ExecutorActor  # noqa: E402
from actors.executing.resources import Load  # noqa: E402
from actors.scheduling import RESULT_QUEUE, Dispatch  # noqa: E402
from actors.scheduling.protocol import work_id  # noqa: E402
from actors.storing import StoreActor  # noqa: E402
from benchmarks._measure import BenchError, percentile, print_aligned  # noqa: E402
from bus import KeysDirectory  # noqa: E402
from config.actors import ActorSettings  # noqa: E402
from config.bus import BusSettings  # noqa: E402
from config.sections import CategorySettings, SchedulerSettings  # noqa: E402
from store import LibsqlStore  # noqa: E402
from store.records import NewExecution  # noqa: E402
from tasks import BaseTask, TaskContext, TaskRegistry, TaskResult  # noqa: E402

QUICK = {"latency_tasks": 300, "throughput_tasks": 3_000}
FULL = {"latency_tasks": 2_000, "throughput_tasks": 20_000}
CONCURRENCY = 64


class Empty(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        return TaskResult.ok()


class QuietProbe:
    """The machine's load does not hold starts back here: the executor's own cost is measured."""

    def load(self) -> Load:
        return Load(cpu_percent=0.0, memory_percent=0.0)


async def _record(store: LibsqlStore, count: int, offset: int) -> list[str]:
    now = datetime.now(UTC)
    base = int(now.timestamp() * 1_000_000) - 10**9
    records = await asyncio.gather(
        *(
            store.record_execution(
                NewExecution(
                    task_id="user.empty",
                    scheduled_at=datetime.fromtimestamp((base + offset + n) / 1e6, UTC),
                    started_at=now,
                )
            )
            for n in range(count)
        )
    )
    return [r.record.execution_id for r in records]


def _dispatch(execution_id: str) -> dict[str, Any]:
    return Dispatch(
        execution_id=execution_id,
        task_id="user.empty",
        task_class=Empty.key(),
        scheduled_at=datetime.now(UTC),
        attempt=1,
        timeout_s=60.0,
        allow_overlap=True,
    ).payload()


async def run_all(plan: dict[str, int], directory: Path) -> dict[str, Any]:
    keys = KeysDirectory(directory / "keys")
    keys.broker_keypair(create=True)
    system = await ActorSystem.embedded(
        settings=ActorSettings(), bus_settings=BusSettings(), keys=keys, name="bench"
    )
    store = LibsqlStore(directory / "taskbus.db", environ={})
    await system.spawn(lambda: StoreActor(store))
    registry = TaskRegistry()
    registry.register(Empty)
    scheduler = SchedulerSettings(max_concurrent_tasks=CONCURRENCY)
    await system.spawn(
        lambda: ExecutorActor(
            CategorySettings(name="user", concurrency=CONCURRENCY),
            registry,
            scheduler=scheduler,
            probe=QuietProbe(),
        ),
        name="executor-user",
    )
    producer = await system.client("scheduler")
    results = await producer.consume(RESULT_QUEUE, credit=1_000)
    try:
        latencies = []
        ids = await _record(store, plan["latency_tasks"], 0)
        for execution_id in ids:
            started = time.perf_counter()
            await producer.enqueue(
                "scheduler.task.dispatch.user",
                _dispatch(execution_id),
                message_id=work_id(execution_id),
            )
            delivery = await results.get(timeout=30)
            latencies.append((time.perf_counter() - started) * 1000)
            delivery.ack()
        count = plan["throughput_tasks"]
        ids = await _record(store, count, 10**7)
        started = time.perf_counter()
        for execution_id in ids:
            producer.enqueue_nowait(
                "scheduler.task.dispatch.user",
                _dispatch(execution_id),
                message_id=work_id(execution_id),
            )
        for _ in range(count):
            (await results.get(timeout=60)).ack()
        elapsed = time.perf_counter() - started
        stored = (await store.stats(task_id="user.empty")).overall
        if stored.succeeded != plan["latency_tasks"] + count:
            raise BenchError(f"{stored.succeeded} results stored, expected {len(ids)} more")
    finally:
        await producer.stop()
        await system.stop()
    latencies.sort()
    return {
        "empty_task_e2e_p50_ms": round(percentile(latencies, 0.5), 3),
        "empty_task_e2e_p99_ms": round(percentile(latencies, 0.99), 3),
        "empty_tasks_s": round(count / elapsed),
        "throughput_tasks": count,
        "latency_tasks": plan["latency_tasks"],
        "concurrency": CONCURRENCY,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (< 30 s)")
    args = parser.parse_args(argv)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="taskbus-bench-") as directory:
        try:
            measured = asyncio.run(run_all(plan, Path(directory)))
        except (BenchError, TimeoutError) as exc:
            print(f"benchmark failed: {exc!r}", file=sys.stderr)
            print(json.dumps({"benchmark": "taskbus.tasks", "mode": mode, "error": repr(exc)}))
            return 1
    summary = {"benchmark": "taskbus.tasks", "mode": mode, "cpus": os.cpu_count(), **measured}
    summary["seconds"] = round(time.monotonic() - begun, 1)
    print_aligned(
        ["measure", "value", "target"],
        [
            [
                "empty task, dispatch to result stored, p50",
                f"{measured['empty_task_e2e_p50_ms']} ms",
                "<= 2 ms",
            ],
            ["same, p99", f"{measured['empty_task_e2e_p99_ms']} ms", ""],
            [
                "empty tasks per second, results stored",
                f"{measured['empty_tasks_s']:,}",
                ">= 5,000",
            ],
        ],
    )
    print(
        f"\n{mode} mode, {summary['seconds']} s, {summary['cpus']} cpus; concurrency {CONCURRENCY}"
    )
    print(json.dumps(summary, separators=(",", ":"), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
