"""taskbus against the peers a user would pick instead: APScheduler 3, Celery + Redis, Huey and
DBOS.

Run ``python benchmarks/peers.py [--quick]`` from the repository root. It prints tables and, as
its last line, one JSON object. Missing peers are installed first: APScheduler 3, SQLAlchemy,
Celery with its Redis client, Huey and DBOS into the running interpreter (pip; ``pip install -e
'.[bench]'`` does the same), ``redis-server`` from Debian's packages (``apt-get install -y
redis-server``).

Every measurement runs in a fresh process, one after the other, so that no peer's imports,
threads or memory weigh on another's and no two of them compete for the two cores:

- **throughput**: N no-op tasks; every peer is timed over the same span, from "N tasks are
  due/queued and stored" to "N results are stored", and its creation (sending, enqueueing) is
  timed apart, as a row of its own.

  - *taskbus*: an embedded ``Taskbus`` (every actor in one asyncio process, inproc bus only,
    the encrypted libSQL file in a temporary directory with the shipped durability,
    ``synchronous = FULL``), N ``user.*`` tasks of ``benchmarks.noop_tasks:Noop`` created with
    ``TaskbusClient.create_many`` (timed) with the schedule ``at:<T0>``, T0 a moment after the
    last creation (1,000 batched creations due in a day first estimate how long N take). Timed
    from T0 until the ``user`` executor has settled N runs: for each, the outcome committed in
    the store, then the result queued for the scheduler (the executor's counters, read in
    process every 10 ms; built-in tasks run on other executors).
  - *APScheduler 3*: ``AsyncIOScheduler`` (its default executor for a coroutine job runs it on
    the event loop), N ``date`` jobs running an empty coroutine, ``misfire_grace_time`` one hour;
    added while the scheduler is paused (timed), due at once, and timed from ``resume()`` until
    the job counted its N-th run. Once with the memory job store, once with the SQLAlchemy job
    store on a SQLite file (SQLAlchemy's defaults: rollback journal, ``synchronous = FULL``).
  - *Celery + Redis*: a local ``redis-server`` (its default configuration); N ``noop.delay()``
    sent (timed) while no worker runs, then ``celery -A benchmarks.celery_noop worker
    --pool=solo`` started as a process of its own; timed from its ``worker_ready`` signal until
    N results are in Redis, then every one read back (``ResultSet.join_native``).
  - *Huey*: ``SqliteHuey`` on a file (WAL, ``fsync=True``), N ``noop()`` enqueued (timed), then
    the consumer started as a process of its own (thread workers, 1 by default:
    ``--huey-workers``); timed from its first worker's start until N results are in its result
    store.
  - *DBOS*: in process on its SQLite system database; a queue registered with concurrency 32
    and a worker limit of 0 (nothing dequeued) gets N one-step workflows (timed), then is
    registered again without the worker limit (polling every 10 ms: ``--dbos-poll``); timed
    until N workflows are ``SUCCESS`` in the database.

- **firing latency**: M one-shot tasks due at distinct instants 10 ms apart; a fire's latency is
  the wall time at which the task's code starts minus its scheduled instant. taskbus: ``at:``
  tasks of ``benchmarks.noop_tasks:Latency`` (the scheduler records the fire in the store, with
  an fsync, before it dispatches it). APScheduler 3: ``AsyncIOScheduler``, memory job store,
  ``date`` jobs.

- **the shipped burst** (``burst``): 20,000 one-shot tasks (``--burst N``) of
  ``benchmarks.noop_tasks:Stamped`` due within one second, on the shipped settings (no override
  but the data directory); from the first due instant until every result is stored; tasks/s and
  lateness (start minus due instant) p50/p99. Every task must have run exactly once.

- **scale-out** (``scale_out``): N due at once as in the taskbus row, the broker also on its ipc
  socket, with the embedded ``user`` executor alone, then joined by a second process
  ``taskbus actor executor-user --identity executor-user-2`` over ipc; results counted at the
  scheduler.

- **create_many** (``--only create_many``, taskbus only): 20,000 tasks (``--create-many N``)
  created through ``TaskbusClient.create_many`` on an embedded taskbus, in requests of 1,000
  (``scheduler.task.create_many``: one store write each), four in flight; then 1,000 more one
  request each (``client.create``, 32 in flight), for comparison. Every task is due in a day.
  JSON ``create_many_tasks_s`` (target 20,000) and ``one_by_one_create_tasks_s``; the phase
  also reports the loop thread's and the process's CPU (the difference: mostly the store's
  thread). ``--profile FILE`` profiles the batched creations (the loop thread).

taskbus runs every row on the shipped settings (``scheduler.max_concurrent_tasks`` 64,
``categories.user.concurrency`` 32, ``resources.max_cpu_percent`` 80): nothing is tuned for the
figures. ``--taskbus-tuned`` runs its rows but the burst with ``categories.user.concurrency`` 64
and CPU admission off instead, the settings of the runs before the shipped defaults changed.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import json
import logging
import multiprocessing
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

# ``python benchmarks/peers.py`` puts this directory first on sys.path, where ``scheduler.py``
# and ``actors.py`` would shadow taskbus's packages. The repository root takes its place.
_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

from benchmarks._children import await_line, free_port, stop  # noqa: E402
from benchmarks._measure import (  # noqa: E402
    BenchError,
    aps3_fire_latencies,
    latency_summary,
    percentile,
    print_aligned,
)


@dataclass(frozen=True, slots=True)
class Plan:
    tasks: int  # N, the throughput rows
    repeats: int  # throughput runs per side (the median is reported)
    fires: int  # M, the latency rows
    spacing_ms: float
    tuned: bool = False  # taskbus with TUNED over the shipped settings (not the burst)
    mailbox: int = 0  # actors.mailbox_size for taskbus (0: the shipped 1,000)
    profile: str = ""  # cProfile the taskbus throughput window (event-loop thread) into this file
    create_many: int = 20_000  # tasks the create_many row creates in batches
    one_by_one: int = 1_000  # tasks it creates one request each, for comparison
    burst: int = 20_000  # one-shot tasks due within one second, shipped settings
    huey_workers: int = 1  # Huey consumer thread workers
    dbos_poll_s: float = 0.01  # DBOS queue polling interval


QUICK = Plan(tasks=10_000, repeats=1, fires=300, spacing_ms=10.0)
FULL = Plan(tasks=10_000, repeats=3, fires=1_000, spacing_ms=10.0)

TUNED = {
    "scheduler.max_concurrent_tasks": 64,
    "categories.user.concurrency": 64,
    "resources.max_cpu_percent": 100.0,
}
CREATE_CONCURRENCY = 32  # creations in flight (the scheduler actor serves 32 requests at once)
CALIBRATION_TASKS = 200  # created (and deleted) first to learn how long N creations take
BATCH_CALIBRATION = 1_000  # created in a batch first to learn how long N batched creations take
BURST_WINDOW_S = 1.0  # the shipped burst's tasks are due within this span
CONCURRENCY = 32  # the shipped categories.user.concurrency: DBOS's queue runs as many at once
READY_S = 60.0  # a peer's worker process to start
POLL_S = 0.01
STALL_S = 30.0  # no result for this long: taskbus is stuck, the run fails
PHASE_TIMEOUT_S = 900.0
CELERY_READY_S = 60.0


# ------------------------------------------------------------------------------ helpers


class _Warnings(logging.Handler):
    """Counts the warnings and errors logged in a child, by kind (logger and message with its
    numbers and quoted parts blanked); nothing reaches the terminal."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.kinds: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        message = re.sub(r"'[^']*'|\d+(\.\d+)?", "_", record.getMessage().splitlines()[0])
        self.kinds[f"{record.levelname} {record.name}: {message[:160]}"] += 1

    def report(self) -> dict[str, Any]:
        return {
            "log_warnings": sum(self.kinds.values()),
            "log_kinds": dict(self.kinds.most_common(8)),
        }


def _watch_logs() -> _Warnings:
    handler = _Warnings()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    return handler


def _in_fresh_home(
    main: Callable[[str], Coroutine[Any, Any, dict[str, Any]]], warnings: _Warnings
) -> dict[str, Any]:
    """``main(directory)`` run in a temporary taskbus home; a stall (BenchError) becomes
    ``{"error": ...}``, what the logs say being the interesting part; the log counts added."""
    with tempfile.TemporaryDirectory(prefix="taskbus-peers-") as directory:
        try:
            result = asyncio.run(main(directory))
        except BenchError as exc:
            result = {"error": str(exc)}
    result.update(warnings.report())
    return result


def _rates(count: int, elapsed: float, create_s: float) -> dict[str, float]:
    """What every throughput row reports: ``count`` done in ``elapsed`` s, created in
    ``create_s`` s."""
    return {
        "tasks_s": round(count / elapsed, 1),
        "seconds": round(elapsed, 3),
        "create_s": round(create_s, 2),
        "creates_s": round(count / create_s, 1),
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


# ------------------------------------------------------------------------------ taskbus


def _taskbus_settings(directory: str, plan: Plan) -> Any:
    from config import load_settings

    overrides: dict[str, object] = {"paths.data_dir": directory, "log_level": "warning"}
    if plan.tuned:
        overrides.update(TUNED)
    if plan.mailbox:
        overrides["actors.mailbox_size"] = plan.mailbox
    return load_settings(overrides=overrides, environ={})


async def _create_all(client: Any, specs: list[tuple[str, str, str]]) -> None:
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def create(task_id: str, task_class: str, schedule: str) -> None:
        async with gate:
            await client.create(task_id, task_class, schedule)

    await asyncio.gather(*(create(*spec) for spec in specs))


async def _due_after_creating(client: Any, count: int) -> datetime:
    """An instant by which ``count`` more creations will surely be done, learnt by creating (and
    deleting) CALIBRATION_TASKS tasks due in a day."""
    far = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    ids = [f"user.calibrate_{i:04d}" for i in range(CALIBRATION_TASKS)]
    started = time.perf_counter()
    await _create_all(client, [(i, "benchmarks.noop_tasks:Noop", f"at:{far}") for i in ids])
    per_task_s = (time.perf_counter() - started) / CALIBRATION_TASKS
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)

    async def delete(task_id: str) -> None:
        async with gate:
            await client.delete(task_id)

    await asyncio.gather(*(delete(i) for i in ids))
    return datetime.now(UTC) + timedelta(seconds=2.0 + 1.6 * per_task_s * count)


def _counters(taskbus: Any, actor: str = "scheduler") -> Any:
    """An actor's counters, read in this process: free, unlike ``scheduler.stats``, which also
    has the store compute every task's run statistics."""
    return taskbus.system.instance(actor).counters


NOOP = "benchmarks.noop_tasks:Noop"


async def _create_batched(client: Any, specs: list[dict[str, str]]) -> float:
    """``specs`` created through ``TaskbusClient.create_many``; the seconds it took."""
    started = time.perf_counter()
    results = await client.create_many(specs)
    seconds = time.perf_counter() - started
    refused = [r for r in results if not r.ok]
    if len(results) != len(specs) or refused:
        raise BenchError(
            f"create_many: {len(results)} results for {len(specs)} specs, {len(refused)} refused "
            f"(first: {refused[0].error if refused else None})"
        )
    return seconds


async def _due_after_batch_creating(client: Any, count: int) -> datetime:
    """An instant by which ``count`` more batched creations will surely be done, learnt by
    creating BATCH_CALIBRATION tasks due in a day (left in place: they never fire here)."""
    far = f"at:{(datetime.now(UTC) + timedelta(days=1)).isoformat()}"
    specs = [
        {"task_id": f"user.calibrate_{i:05d}", "task_class": NOOP, "schedule": far}
        for i in range(BATCH_CALIBRATION)
    ]
    per_task_s = await _create_batched(client, specs) / BATCH_CALIBRATION
    return datetime.now(UTC) + timedelta(seconds=2.0 + 2.0 * per_task_s * count)


async def _create_due(
    client: Any, count: int, task_class: str, spread_s: float = 0.0, prefix: str = "noop"
) -> tuple[datetime, float]:
    """``count`` one-shot tasks ``user.<prefix>_<i>`` due from T0 on, ``spread_s`` apart in all
    (0: all at T0), created in batches; T0 and the creation's seconds. Fails if the creations
    ran past T0."""
    due = await _due_after_batch_creating(client, count)
    step = timedelta(seconds=spread_s / count)
    specs = [
        {
            "task_id": f"user.{prefix}_{i:05d}",
            "task_class": task_class,
            "schedule": f"at:{(due + i * step).isoformat()}",
        }
        for i in range(count)
    ]
    create_s = await _create_batched(client, specs)
    margin_s = (due - datetime.now(UTC)).total_seconds()
    if margin_s <= 0.05:
        raise BenchError(f"creating {count} tasks ran {-margin_s:.1f} s past T0")
    return due, create_s


async def _until(instant: datetime) -> None:
    await asyncio.sleep(max(0.0, (instant - datetime.now(UTC)).total_seconds()))


async def _drain(count: int, t0: float, done: Any, state: Any) -> float:
    """Polls ``done()`` (results so far, from 0) every POLL_S until it reaches ``count``; the
    seconds from ``t0`` (a ``time.time()``) to then. Fails after STALL_S without progress or
    PHASE_TIMEOUT_S in all, quoting ``state()``."""
    deadline = time.monotonic() + PHASE_TIMEOUT_S
    finished, progressed = 0, time.monotonic()
    while finished < count:
        now = time.monotonic()
        if now > deadline or now - progressed > STALL_S:
            why = "no result" if now - progressed > STALL_S else "timed out"
            raise BenchError(
                f"taskbus stalled: {why} for {now - progressed:.0f} s, {finished:,} of "
                f"{count:,} results after {time.time() - t0:.1f} s; {state()}"
            )
        await asyncio.sleep(POLL_S)
        if done() > finished:
            finished, progressed = done(), now
    return time.time() - t0


def _settled(counters: Any) -> int:
    """Runs an executor settled: outcome committed, then the result queued for the scheduler."""
    return int(sum(counters[k] for k in ("succeeded", "failed", "skipped", "timed_out")))


async def _stored_once(client: Any, count: int, prefix: str = "noop") -> str:
    """A check in the store, on a sample: each task's one run is stored as succeeded.
    (``scheduler.stats`` cannot do it: with 10,000 tasks the store's per-task statistics exceed
    ``bus.max_message_bytes``.)"""
    sample = random.Random(7).sample(range(count), min(50, count))
    stored = 0
    for index in sample:
        runs = await client.history(f"user.{prefix}_{index:05d}", limit=5)
        stored += len(runs) == 1 and runs[0].get("success") is True
    return f"{stored}/{len(sample)}"


def taskbus_throughput(plan: Plan) -> dict[str, Any]:
    from taskbus import Taskbus

    warnings = _watch_logs()

    async def main(directory: str) -> dict[str, Any]:
        settings = _taskbus_settings(directory, plan)
        async with Taskbus(settings, task_modules=["benchmarks.noop_tasks"], endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)  # a scheduler leads
            due, create_s = await _create_due(client, plan.tasks, NOOP)
            counters = _counters(bus)  # the scheduler's
            settled = _counters(bus, "executor-user")  # runs of user.* tasks only
            base, failed_before = _settled(settled), settled["failed"]
            fires_before = counters["fires"]
            rss_before = _rss_mb()
            await _until(due)
            loop_cpu, process_cpu = time.thread_time(), time.process_time()
            profiler = cProfile.Profile() if plan.profile else None
            if profiler is not None:
                profiler.enable()
            elapsed = await _drain(
                plan.tasks,
                due.timestamp(),
                lambda: _settled(settled) - base,
                lambda: f"scheduler counters {dict(counters)}, executor {dict(settled)}",
            )
            loop_cpu, process_cpu = time.thread_time() - loop_cpu, time.process_time() - process_cpu
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(plan.profile)
            return {
                **_rates(plan.tasks, elapsed, create_s),
                "fires": counters["fires"] - fires_before,
                "settled": _settled(settled) - base,
                "failed": settled["failed"] - failed_before,
                "missed": counters["missed"],
                "sample_stored_ok": await _stored_once(client, plan.tasks),
                "executor_deferred": settled["deferred"],
                "loop_thread_cpu_s": round(loop_cpu, 2),
                "process_cpu_s": round(process_cpu, 2),
                "rss_growth_mb": round(_rss_mb() - rss_before, 1),
            }

    return _in_fresh_home(main, warnings)


def taskbus_burst(plan: Plan) -> dict[str, Any]:
    """``plan.burst`` one-shot tasks due within one second on the shipped settings (no
    override but the data directory); from the first due instant until every result is stored.
    Each run notes its task id and lateness (``noop_tasks.Stamped``): every task must have run
    exactly once."""
    from benchmarks import noop_tasks
    from config import load_settings
    from taskbus import Taskbus

    warnings = _watch_logs()

    async def main(directory: str) -> dict[str, Any]:
        settings = load_settings(overrides={"paths.data_dir": directory}, environ={})
        async with Taskbus(settings, task_modules=["benchmarks.noop_tasks"], endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)
            stamped = "benchmarks.noop_tasks:Stamped"
            due, create_s = await _create_due(
                client, plan.burst, stamped, BURST_WINDOW_S, prefix="burst"
            )
            counters = _counters(bus)
            settled = _counters(bus, "executor-user")
            base, fires_before = _settled(settled), counters["fires"]
            await _until(due)
            elapsed = await _drain(
                plan.burst,
                due.timestamp(),
                lambda: _settled(settled) - base,
                lambda: f"scheduler counters {dict(counters)}, executor {dict(settled)}",
            )
            runs = noop_tasks.STARTS
            expected = {f"user.burst_{i:05d}" for i in range(plan.burst)}
            twice = sum(1 for lates in runs.values() if len(lates) > 1)
            if set(runs) != expected or twice:
                raise BenchError(
                    f"burst: {len(expected - set(runs))} tasks never ran, "
                    f"{len(set(runs) - expected)} unknown ran, {twice} ran more than once"
                )
            lateness = sorted(lates[0] for lates in runs.values())
            return {
                **_rates(plan.burst, elapsed, create_s),
                "late_p50_s": round(percentile(lateness, 0.50), 3),
                "late_p99_s": round(percentile(lateness, 0.99), 3),
                "late_max_s": round(lateness[-1], 3),
                "ran_exactly_once": len(runs),
                "fires": counters["fires"] - fires_before,
                "missed": counters["missed"],
                "failed": settled["failed"],
                "executor_deferred": settled["deferred"],
                "sample_stored_ok": await _stored_once(client, plan.burst, "burst"),
                "settings": {
                    "scheduler.max_concurrent_tasks": settings.scheduler.max_concurrent_tasks,
                    "categories.user.concurrency": next(
                        c.concurrency for c in settings.categories if c.name == "user"
                    ),
                    "resources.max_cpu_percent": settings.resources.max_cpu_percent,
                },
            }

    return _in_fresh_home(main, warnings)


def _extra_executor(plan: Plan, directory: str, endpoint: str) -> subprocess.Popen[str]:
    """``taskbus actor executor-user --identity executor-user-2`` over ipc, with the same
    concurrency and admission as the embedded one; returns once it printed "connected to"."""
    tuned = TUNED if plan.tuned else {}
    env = os.environ | {
        "TASKBUS_HOME": directory,
        "TASKBUS_SCHEDULER__TASK_MODULES": '["benchmarks.noop_tasks"]',
        "TASKBUS_LOG_LEVEL": "warning",
        "PYTHONPATH": str(_ROOT),
        **{"TASKBUS_" + k.upper().replace(".", "__"): str(v) for k, v in tuned.items()},
    }
    command = [sys.executable, "-m", "taskbus", "actor", "executor-user"]
    command += ["--identity", "executor-user-2", "--connect", endpoint]
    child = subprocess.Popen(command, cwd=_ROOT, env=env, stderr=subprocess.PIPE, text=True)
    await_line(child, "connected to", READY_S, "the extra executor did not connect")
    return child


def taskbus_scale(plan: Plan, executors: int) -> dict[str, Any]:
    """N due at once as in ``taskbus_throughput``, the broker also on its ipc socket, with the
    embedded ``user`` executor alone (1) or joined by a second ``executor-user`` process (2).
    Results are counted at the scheduler (both executors' results reach it)."""
    from bus import KeysDirectory
    from taskbus import Taskbus

    warnings = _watch_logs()

    async def main(directory: str) -> dict[str, Any]:
        settings = _taskbus_settings(directory, plan)
        endpoint = settings.paths.ipc_endpoint
        KeysDirectory(settings.paths.keys_dir).identity_keypair("executor-user-2", create=True)
        child: subprocess.Popen[str] | None = None
        modules = ["benchmarks.noop_tasks"]
        try:
            async with Taskbus(settings, task_modules=modules, endpoints=[endpoint]) as bus:
                client = await bus.client(timeout_s=60.0)
                await client.stats(wait_s=30.0)
                if executors == 2:
                    child = await asyncio.to_thread(_extra_executor, plan, directory, endpoint)
                due, create_s = await _create_due(client, plan.tasks, NOOP)
                counters = _counters(bus)
                here = _counters(bus, "executor-user")

                def results() -> int:
                    return int(counters["succeeded"] + counters["failed"])

                base, here_base = results(), _settled(here)
                await _until(due)
                cpu = time.process_time()
                elapsed = await _drain(
                    plan.tasks,
                    due.timestamp(),
                    lambda: results() - base,
                    lambda: f"scheduler counters {dict(counters)}, embedded executor {dict(here)}",
                )
                cpu = time.process_time() - cpu
                return {
                    "tasks_s": round(plan.tasks / elapsed, 1),
                    "seconds": round(elapsed, 3),
                    "executors": executors,
                    "creates_s": round(plan.tasks / create_s, 1),
                    "results": results() - base,
                    "failed": counters["failed"],
                    "missed": counters["missed"],
                    "ran_in_measuring_process": _settled(here) - here_base,
                    "measuring_process_cpu_s": round(cpu, 2),
                    "sample_stored_ok": await _stored_once(client, plan.tasks),
                }
        finally:
            stop(child)

    return _in_fresh_home(main, warnings)


def taskbus_one_executor(plan: Plan) -> dict[str, Any]:
    return taskbus_scale(plan, 1)


def taskbus_two_executors(plan: Plan) -> dict[str, Any]:
    return taskbus_scale(plan, 2)


def taskbus_create_many(plan: Plan) -> dict[str, Any]:
    """``plan.create_many`` tasks created through the client in batches of 1,000
    (``scheduler.task.create_many``: one request and one store write per batch), then
    ``plan.one_by_one`` more one request each (``scheduler.task.create``, CREATE_CONCURRENCY in
    flight), on an embedded taskbus; each due in a day, so nothing fires meanwhile."""
    from taskbus import Taskbus

    warnings = _watch_logs()

    async def main(directory: str) -> dict[str, Any]:
        settings = _taskbus_settings(directory, plan)
        async with Taskbus(settings, task_modules=["benchmarks.noop_tasks"], endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)  # a scheduler leads
            instant = f"at:{(datetime.now(UTC) + timedelta(days=1)).isoformat()}"
            specs = [
                {
                    "task_id": f"user.batch_{i:05d}",
                    "task_class": "benchmarks.noop_tasks:Noop",
                    "schedule": instant,
                }
                for i in range(plan.create_many)
            ]
            loop_cpu, process_cpu = time.thread_time(), time.process_time()
            profiler = cProfile.Profile() if plan.profile else None
            if profiler is not None:
                profiler.enable()
            started = time.perf_counter()
            results = await client.create_many(specs)
            batch_s = time.perf_counter() - started
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(plan.profile)
            loop_cpu, process_cpu = time.thread_time() - loop_cpu, time.process_time() - process_cpu
            refused = [r for r in results if not r.ok]
            if len(results) != plan.create_many or refused:
                raise BenchError(
                    f"create_many: {len(results)} results, {len(refused)} refused "
                    f"(first: {refused[0].error if refused else None})"
                )
            sample = random.Random(7).sample(range(plan.create_many), min(50, plan.create_many))
            stored = 0
            for index in sample:
                task = await client.get(f"user.batch_{index:05d}")
                stored += task["next_run"] is not None and task["owner"] == "app"
            single = [
                (f"user.single_{i:05d}", "benchmarks.noop_tasks:Noop", instant)
                for i in range(plan.one_by_one)
            ]
            started = time.perf_counter()
            await _create_all(client, single)
            single_s = time.perf_counter() - started
            return {
                "create_many_tasks_s": round(plan.create_many / batch_s, 1),
                "create_many_tasks": plan.create_many,
                "create_many_s": round(batch_s, 3),
                "loop_thread_cpu_s": round(loop_cpu, 2),
                "process_cpu_s": round(process_cpu, 2),
                "other_threads_cpu_s": round(process_cpu - loop_cpu, 2),
                "sample_stored_ok": f"{stored}/{len(sample)}",
                "one_by_one_tasks_s": round(plan.one_by_one / single_s, 1),
                "one_by_one_tasks": plan.one_by_one,
            }

    return _in_fresh_home(main, warnings)


def taskbus_latency(plan: Plan) -> dict[str, Any]:
    from benchmarks import noop_tasks
    from taskbus import Taskbus

    warnings = _watch_logs()

    async def main(directory: str) -> list[float]:
        settings = _taskbus_settings(directory, plan)
        async with Taskbus(settings, task_modules=["benchmarks.noop_tasks"], endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)
            first = await _due_after_creating(client, plan.fires)
            specs = [
                (
                    f"user.latency_{i:05d}",
                    "benchmarks.noop_tasks:Latency",
                    f"at:{(first + timedelta(milliseconds=i * plan.spacing_ms)).isoformat()}",
                )
                for i in range(plan.fires)
            ]
            await _create_all(client, specs)
            if datetime.now(UTC) >= first:
                raise BenchError("creating the latency tasks ran past the first fire")
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            while len(noop_tasks.LATENESS_MS) < plan.fires:
                if time.monotonic() > deadline:
                    raise BenchError(f"taskbus: {len(noop_tasks.LATENESS_MS)} fires ran")
                await asyncio.sleep(0.05)
            return list(noop_tasks.LATENESS_MS)

    with tempfile.TemporaryDirectory(prefix="taskbus-peers-") as directory:
        summary = latency_summary(asyncio.run(main(directory)))
    summary.update(warnings.report())
    return summary


# ------------------------------------------------------------------------------ APScheduler 3

_APS_DONE: dict[str, Any] = {}


async def aps_noop() -> None:
    """The job: module level, so the SQLAlchemy job store can pickle a reference to it."""
    _APS_DONE["count"] += 1
    if _APS_DONE["count"] >= _APS_DONE["target"]:
        _APS_DONE["at"] = time.perf_counter()
        _APS_DONE["event"].set()


def _aps_throughput(plan: Plan, store: str) -> dict[str, Any]:
    from apscheduler.jobstores.memory import MemoryJobStore
    from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    warnings = _watch_logs()

    async def main(directory: str) -> dict[str, Any]:
        _APS_DONE.update(count=0, target=plan.tasks, event=asyncio.Event())
        jobstore = (
            MemoryJobStore()
            if store == "memory"
            else SQLAlchemyJobStore(url=f"sqlite:///{directory}/jobs.sqlite")
        )
        scheduler = AsyncIOScheduler(jobstores={"default": jobstore}, timezone=UTC)
        scheduler.start(paused=True)
        run_date = datetime.now(UTC)
        created = time.perf_counter()
        for index in range(plan.tasks):
            scheduler.add_job(
                aps_noop, "date", run_date=run_date, id=f"noop-{index:05d}", misfire_grace_time=3600
            )
        create_s = time.perf_counter() - created
        rss_before = _rss_mb()
        started = time.perf_counter()
        scheduler.resume()
        await asyncio.wait_for(_APS_DONE["event"].wait(), PHASE_TIMEOUT_S)
        elapsed = _APS_DONE["at"] - started
        await asyncio.sleep(0.2)  # runs past N would show here
        left = len(scheduler.get_jobs())
        scheduler.shutdown(wait=False)
        return {
            **_rates(plan.tasks, elapsed, create_s),
            "succeeded": _APS_DONE["count"],
            "jobs_left": left,
            "rss_growth_mb": round(_rss_mb() - rss_before, 1),
        }

    with tempfile.TemporaryDirectory(prefix="taskbus-peers-") as directory:
        result = asyncio.run(main(directory))
    result.update(warnings.report())
    return result


def aps_memory_throughput(plan: Plan) -> dict[str, Any]:
    return _aps_throughput(plan, "memory")


def aps_sqlite_throughput(plan: Plan) -> dict[str, Any]:
    return _aps_throughput(plan, "sqlite")


def aps_latency(plan: Plan) -> dict[str, Any]:
    warnings = _watch_logs()
    latencies = asyncio.run(aps3_fire_latencies(plan.fires, plan.spacing_ms, PHASE_TIMEOUT_S))
    summary = latency_summary(latencies)
    summary.update(warnings.report())
    return summary


# ------------------------------------------------------------------------------ Celery + Redis


def celery_throughput(plan: Plan, redis_url: str, directory: str) -> dict[str, Any]:
    """N ``noop.delay()`` sent with no worker running (the creation row: they sit in Redis),
    then the solo worker started as a process of its own; timed from its ``worker_ready``
    signal until N results are in Redis (``DBSIZE`` of the result database, read every
    POLL_S), then every result read back (``ResultSet.join_native``)."""
    os.environ["PEERS_REDIS_URL"] = redis_url
    import redis
    from celery.result import ResultSet

    from benchmarks.celery_noop import noop

    broker, stored = redis.Redis.from_url(f"{redis_url}/0"), redis.Redis.from_url(f"{redis_url}/1")
    broker.flushall()
    noop.delay()  # the connections (its result does not count: it is flushed below)
    broker.flushall()
    started = time.perf_counter()
    results = [noop.delay() for _ in range(plan.tasks)]
    sent_s = time.perf_counter() - started
    queued = int(broker.llen("celery"))
    ready = Path(directory) / "worker.ready"
    ready.unlink(missing_ok=True)
    log = open(Path(directory) / "worker.log", "ab")  # noqa: SIM115
    launched = time.time()
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "benchmarks.celery_noop",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
        ],
        cwd=_ROOT,
        env=os.environ | {"PEERS_CELERY_READY": str(ready), "PYTHONPATH": str(_ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _poll(plan.tasks, lambda: int(stored.dbsize()), "celery", "results", ("worker", worker))
        ended = time.time()
        values = ResultSet(results).join_native(timeout=PHASE_TIMEOUT_S, interval=0.01)
    finally:
        stop(worker)
        log.close()
    succeeded = sum(1 for r in results if r.successful())
    if len(values) != plan.tasks or succeeded != plan.tasks:
        raise BenchError(f"celery: {len(values)} results, {succeeded} successful")
    if queued != plan.tasks:
        raise BenchError(f"celery: {queued} of {plan.tasks} in the queue when the worker started")
    elapsed = ended - float(ready.read_text())
    return {
        **_rates(plan.tasks, elapsed, sent_s),
        "with_worker_start_tasks_s": round(plan.tasks / (ended - launched), 1),
        "queued_at_start": queued,
        "succeeded": succeeded,
    }


# ------------------------------------------------------------------------------ Huey


def huey_throughput(plan: Plan) -> dict[str, Any]:
    """N ``noop()`` enqueued on ``SqliteHuey`` from this process (timed: the creation row), then
    the consumer started as a process of its own; timed from its first worker's start until N
    results are in Huey's result store (the ``kv`` table, read here every POLL_S)."""
    warnings = _watch_logs()
    with tempfile.TemporaryDirectory(prefix="taskbus-peers-huey-") as directory:
        database = f"{directory}/huey.db"
        os.environ["PEERS_HUEY_DB"] = database
        from benchmarks.huey_noop import huey, noop

        started = time.perf_counter()
        for _ in range(plan.tasks):
            noop()
        create_s = time.perf_counter() - started
        queued = huey.pending_count()
        log = open(Path(directory) / "consumer.log", "wb")  # noqa: SIM115
        launched = time.time()
        consumer = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "huey.bin.huey_consumer",
                "benchmarks.huey_noop.huey",
                "--worker-type",
                "thread",
                "--workers",
                str(plan.huey_workers),
                "--no-periodic",
                "--quiet",
            ],
            cwd=_ROOT,
            env=os.environ | {"PYTHONPATH": str(_ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        reader = sqlite3.connect(database)
        try:
            stored = _poll(
                plan.tasks,
                lambda: int(
                    reader.execute(
                        "SELECT count(*) FROM kv WHERE queue = ?", (huey.name,)
                    ).fetchone()[0]
                ),
                "huey",
                "results",
                ("consumer", consumer),
            )
            ended = time.time()
            first = min(float(line) for line in Path(database + ".started").read_text().split())
        finally:
            reader.close()
            stop(consumer)
            log.close()
        elapsed = ended - first
        return {
            **_rates(plan.tasks, elapsed, create_s),
            "with_consumer_start_tasks_s": round(plan.tasks / (ended - launched), 1),
            "queued_at_start": queued,
            "results_stored": stored,
            "workers": f"{plan.huey_workers} thread",
            **warnings.report(),
        }


# ------------------------------------------------------------------------------ DBOS


def dbos_throughput(plan: Plan) -> dict[str, Any]:
    """DBOS in this process on its SQLite system database; a database-backed queue registered
    with ``global_concurrency`` CONCURRENCY and ``worker_concurrency`` 0 (nothing dequeued), N
    one-step workflows enqueued (timed: the creation row); then the queue re-registered without
    the worker limit, and timed until N workflows are SUCCESS in the database (read every
    POLL_S)."""
    from dbos import DBOS

    warnings = _watch_logs()
    with tempfile.TemporaryDirectory(prefix="taskbus-peers-dbos-") as directory:
        database = f"{directory}/dbos.sqlite"
        config: dict[str, Any] = {
            "name": "taskbus-bench",
            "system_database_url": f"sqlite:///{database}",
            "log_level": "WARNING",
        }
        DBOS(config=config)  # type: ignore[arg-type]
        logging.getLogger("dbos").setLevel(logging.WARNING)

        @DBOS.step()
        def noop_step() -> None:
            return None

        @DBOS.workflow()
        def noop_workflow() -> None:
            noop_step()

        DBOS.launch()
        reader = sqlite3.connect(database)

        def count(status: str) -> int:
            query = "SELECT count(*) FROM workflow_status WHERE queue_name = ? AND status = ?"
            return int(reader.execute(query, ("bench", status)).fetchone()[0])

        try:
            queue = DBOS.register_queue(
                "bench",
                global_concurrency=CONCURRENCY,
                worker_concurrency=0,
                polling_interval_sec=plan.dbos_poll_s,
            )
            started = time.perf_counter()
            for _ in range(plan.tasks):
                queue.enqueue(noop_workflow)
            create_s = time.perf_counter() - started
            queued = count("ENQUEUED")
            started = time.perf_counter()
            DBOS.register_queue(
                "bench",
                global_concurrency=CONCURRENCY,
                polling_interval_sec=plan.dbos_poll_s,
                on_conflict="always_update",
            )
            done = _poll(plan.tasks, lambda: count("SUCCESS"), "dbos", "workflows succeeded")
            elapsed = time.perf_counter() - started
            errors = count("ERROR")
        finally:
            reader.close()
            DBOS.destroy(destroy_registry=True)
        if queued != plan.tasks:
            raise BenchError(f"dbos: {queued} of {plan.tasks} enqueued when the queue opened")
        return {
            **_rates(plan.tasks, elapsed, create_s),
            "queued_at_start": queued,
            "succeeded": done,
            "errors": errors,
            "concurrency": CONCURRENCY,
            "polling_interval_s": plan.dbos_poll_s,
            **warnings.report(),
        }


def _poll(
    count: int,
    read: Callable[[], int],
    peer: str,
    what: str,
    child: tuple[str, subprocess.Popen[Any]] | None = None,
) -> int:
    """Reads ``read()`` (how many are done, from 0) every POLL_S until it reaches ``count``;
    returns it. Fails after PHASE_TIMEOUT_S, or once ``child`` (its role and process) has
    exited, with how many were done and the child's exit code."""
    deadline, done = time.monotonic() + PHASE_TIMEOUT_S, 0
    while done < count:
        exited = child is not None and child[1].poll() is not None
        if time.monotonic() > deadline or exited:
            how = "" if child is None else f", {child[0]} exit code {child[1].poll()}"
            raise BenchError(f"{peer}: {done} of {count} {what}{how}")
        time.sleep(POLL_S)
        done = read()
    return done


def ensure_redis_server() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found:
        return found
    print("installing redis-server from Debian's packages (apt-get)", flush=True)
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "redis-server"]
    if subprocess.run(install, env=env, check=False, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(found).exists():
        raise BenchError("redis-server is still missing after apt-get install")
    return found


def run_celery(plan: Plan) -> dict[str, Any]:
    """redis-server started here, the sender (which starts the worker) in a fresh process; both
    stopped whatever happens."""
    server = ensure_redis_server()
    redis_version = subprocess.run(
        [server, "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    port = free_port()
    url = f"redis://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="taskbus-peers-redis-") as directory:
        redis_log = open(Path(directory) / "redis.log", "wb")  # noqa: SIM115
        redis: subprocess.Popen[bytes] | None = None
        try:
            redis = subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory],
                stdout=redis_log,
                stderr=subprocess.STDOUT,
            )
            _wait_for_port(port, redis)
            runs = [
                in_fresh_process("celery_throughput", plan, url, directory)
                for _ in range(plan.repeats)
            ]
        finally:
            stop(redis)
            redis_log.close()
            log = Path(directory) / "worker.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    result = _median_run(runs)
    result["redis"] = next((w[2:] for w in redis_version if w.startswith("v=")), "?")
    result["worker_log_tail"] = tail.strip().splitlines()[-5:] if tail.strip() else []
    return result


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"redis-server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise BenchError(f"redis-server did not listen on {port} within 10 s")


# ------------------------------------------------------------------------------ plumbing


def _child(target: str, plan: Plan, extra: tuple[Any, ...], queue: Any) -> None:
    try:
        queue.put(globals()[target](plan, *extra))
    except BaseException as exc:
        queue.put({"error": f"{target}: {exc!r}"})
        raise


def in_fresh_process(target: str, plan: Plan, *extra: Any) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, plan, extra, queue))
    process.start()
    try:
        result: dict[str, Any] = queue.get(timeout=PHASE_TIMEOUT_S + 120)
    except Exception as exc:  # queue.Empty: the child hung or died without a word
        result = {"error": f"{target}: no result ({exc!r}, exit code {process.exitcode})"}
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
            process.join(timeout=5)
    return result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0] if runs else {"error": "not run"}
    ordered = sorted(good, key=lambda r: r["tasks_s"])
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["runs_tasks_s"] = [r["tasks_s"] for r in good]
    if len(good) < len(runs):
        chosen["failed_runs"] = [r["error"] for r in runs if "error" in r]
    return chosen


def repeated(target: str, plan: Plan) -> dict[str, Any]:
    return _median_run([in_fresh_process(target, plan) for _ in range(plan.repeats)])


PEER_PACKAGES = {  # module -> what pip installs (the 'bench' extra)
    "apscheduler": "apscheduler>=3.10,<4",
    "sqlalchemy": "sqlalchemy>=2",
    "celery": "celery[redis]>=5.3",
    "redis": "celery[redis]>=5.3",
    "huey": "huey>=2.5",
    "dbos": "dbos>=3.4",
}


def ensure_peers() -> dict[str, str]:
    missing = sorted({spec for module, spec in PEER_PACKAGES.items() if not _importable(module)})
    if missing:
        print(f"installing {', '.join(missing)} into this environment (the 'bench' extra)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
    return {name: version(name) for name in PEER_PACKAGES}


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _value(result: dict[str, Any], key: str) -> float | None:
    value = result.get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _ratio_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _cell(value: float | None, digits: int = 1) -> str:
    return "error" if value is None else f"{value:,.{digits}f}"


PHASES = (
    "taskbus",
    "aps_memory",
    "aps_sqlite",
    "celery",
    "huey",
    "dbos",
    "taskbus_latency",
    "aps_latency",
    "burst",
    "scale_out",
    "create_many",
)
OURS_ONLY = {"taskbus", "taskbus_latency", "burst", "scale_out", "create_many"}  # no peer needed
CREATE_MANY_TARGET = 20_000.0  # creations per second, in batches
# JSON name -> (phase, label); every one is timed from "N due/queued and stored" to "N results
# stored", its creation timed apart.
THROUGHPUT = {
    "taskbus": ("taskbus", "taskbus (embedded, shipped settings)"),
    "aps3_memory": ("aps_memory", "APScheduler 3, memory store"),
    "aps3_sqlite": ("aps_sqlite", "APScheduler 3, SQLAlchemy on SQLite"),
    "celery_redis": ("celery", "Celery + Redis, solo worker, prefilled"),
    "huey_sqlite": ("huey", "Huey, SqliteHuey"),
    "dbos_sqlite": ("dbos", "DBOS queue on SQLite, concurrency 32"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per row (~6 min)")
    parser.add_argument("--tasks", type=int, help="N, the tasks of the throughput rows (10,000)")
    parser.add_argument("--only", help=f"comma-separated phases of {','.join(PHASES)}")
    parser.add_argument(
        "--taskbus-tuned",
        action="store_true",
        help="taskbus's rows (not the burst) with user concurrency 64 and CPU admission off",
    )
    parser.add_argument("--mailbox", type=int, default=0, help="taskbus actors.mailbox_size")
    parser.add_argument("--create-many", type=int, help="tasks of the create_many row (20,000)")
    parser.add_argument("--burst", type=int, help="tasks of the shipped burst (20,000)")
    parser.add_argument(
        "--huey-workers", type=int, default=1, help="Huey consumer thread workers (1)"
    )
    parser.add_argument(
        "--dbos-poll", type=float, default=0.01, help="DBOS queue polling interval, s (0.01)"
    )
    parser.add_argument(
        "--profile", default="", help="cProfile taskbus's timed window (its loop thread) into FILE"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = replace(
        plan,
        tasks=args.tasks or plan.tasks,
        tuned=args.taskbus_tuned,
        mailbox=args.mailbox,
        create_many=args.create_many or plan.create_many,
        burst=args.burst or plan.burst,
        huey_workers=args.huey_workers,
        dbos_poll_s=args.dbos_poll,
        profile=str(Path(args.profile).resolve()) if args.profile else "",
    )
    phases = args.only.split(",") if args.only else list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
    mode = "quick" if args.quick else "full"
    versions = {} if set(phases) <= OURS_ONLY else ensure_peers()
    begun = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    runners = {
        "taskbus": lambda: repeated("taskbus_throughput", plan),
        "aps_memory": lambda: repeated("aps_memory_throughput", plan),
        "aps_sqlite": lambda: repeated("aps_sqlite_throughput", plan),
        "celery": lambda: run_celery(plan),
        "huey": lambda: repeated("huey_throughput", plan),
        "dbos": lambda: repeated("dbos_throughput", plan),
        "taskbus_latency": lambda: in_fresh_process("taskbus_latency", plan),
        "aps_latency": lambda: in_fresh_process("aps_latency", plan),
        "burst": lambda: in_fresh_process("taskbus_burst", plan),
        "scale_out": lambda: {
            "one": in_fresh_process("taskbus_one_executor", plan),
            "two": in_fresh_process("taskbus_two_executors", plan),
        },
        "create_many": lambda: in_fresh_process("taskbus_create_many", plan),
    }
    for phase in phases:
        print(f"[{time.monotonic() - begun:6.1f} s] {phase} ...", flush=True)
        try:
            results[phase] = runners[phase]()
        except Exception as exc:  # a missing redis, a failed install...: the other rows stand
            results[phase] = {"error": f"{phase}: {exc!r}"}
        for part in _parts(results[phase]):
            if "error" in part:
                print(f"  failed: {part['error']}", file=sys.stderr, flush=True)

    empty: dict[str, Any] = {}
    rates = {
        name: _value(results.get(phase, empty), "tasks_s")
        for name, (phase, _) in THROUGHPUT.items()
    }
    creates = {
        name: _value(results.get(phase, empty), "creates_s")
        for name, (phase, _) in THROUGHPUT.items()
    }
    tb = rates["taskbus"]
    ratios = {name: _ratio(tb, rate) for name, rate in rates.items() if name != "taskbus"}
    our_fire = results.get("taskbus_latency", empty)
    their_fire = results.get("aps_latency", empty)
    burst = results.get("burst", empty)
    scale = results.get("scale_out", empty)
    one, two = scale.get("one", empty), scale.get("two", empty)
    n = f"{plan.tasks:,}"
    peer_rows: list[list[str]] = []
    rows: list[list[str]] = []
    if {phase for phase, _ in THROUGHPUT.values()} & set(results):
        for name, (phase, label) in THROUGHPUT.items():
            if phase in results:
                ratio = ratios.get(name)
                peer_rows.append(
                    [
                        label,
                        _cell(creates[name]),
                        _cell(rates[name]),
                        "" if name == "taskbus" else _ratio_cell(ratio),
                    ]
                )
    if {"taskbus_latency", "aps_latency"} & set(results):
        for label, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms")):
            a, b = _value(our_fire, key), _value(their_fire, key)
            rows.append(
                [
                    f"firing latency {label} ms, taskbus / APScheduler 3 memory",
                    _cell(a, 2),
                    _cell(b, 2),
                    _ratio_cell(_ratio(a, b)),
                ]
            )
    if "burst" in results:
        rows.append(
            [
                f"{plan.burst:,} due within 1 s, shipped settings: tasks/s, late p50 / p99 s",
                _cell(_value(burst, "tasks_s")),
                " / ".join(_cell(_value(burst, k), 2) for k in ("late_p50_s", "late_p99_s")),
                "",
            ]
        )
    if "scale_out" in results:
        rows.append(
            [
                f"{n} due, 1 / 2 user executor processes, tasks/s",
                _cell(_value(one, "tasks_s")),
                _cell(_value(two, "tasks_s")),
                _ratio_cell(_ratio(_value(two, "tasks_s"), _value(one, "tasks_s"))),
            ]
        )
    batched = results.get("create_many", empty)
    create_many = _value(batched, "create_many_tasks_s")
    if "create_many" in results:
        rows.append(
            [
                f"{plan.create_many:,} creations in batches of 1,000 / one request each, /s",
                _cell(create_many),
                _cell(_value(batched, "one_by_one_tasks_s")),
                _ratio_cell(_ratio(create_many, _value(batched, "one_by_one_tasks_s"))),
            ]
        )
    print()
    if peer_rows:
        head = f"{n} no-op tasks: stored -> results stored"
        print_aligned([head, "creations/s", "tasks/s", "taskbus / peer"], peer_rows)
        print()
    if rows:
        print_aligned(["measure", "taskbus", "peer", "taskbus / peer"], rows)
    seconds = round(time.monotonic() - begun, 1)
    config = "concurrency 64, CPU admission off" if plan.tuned else "shipped settings"
    print(
        f"\n{mode} mode, {plan.repeats} run(s) per throughput row (median), N = {plan.tasks:,}, "
        f"{plan.fires} fires {plan.spacing_ms:g} ms apart; taskbus: {config}; "
        f"{seconds} s, {os.cpu_count()} cpus"
    )
    for phase, result in results.items():
        extra = {k: v for k, v in result.items() if k not in ("tasks_s",)}
        print(f"  {phase}: {json.dumps(extra, default=str)}")

    fire_p99 = _value(our_fire, "p99_ms")
    aps_p99 = _value(their_fire, "p99_ms")
    burst_rate, burst_p99 = _value(burst, "tasks_s"), _value(burst, "late_p99_s")
    summary: dict[str, Any] = {
        "benchmark": "taskbus.peers",
        "mode": mode,
        "n": plan.tasks,
        "fires": plan.fires,
        "burst": plan.burst,
        "taskbus_settings": TUNED if plan.tuned else "shipped",
        **{f"{name}_tasks_s": rate for name, rate in rates.items()},
        **{f"{name}_create_s": rate for name, rate in creates.items()},
        **{f"ratio_taskbus_vs_{name}": ratio for name, ratio in ratios.items()},
        "taskbus_fire_p50_ms": _value(our_fire, "p50_ms"),
        "taskbus_fire_p99_ms": fire_p99,
        "taskbus_fire_max_ms": _value(our_fire, "max_ms"),
        "aps3_fire_p50_ms": _value(their_fire, "p50_ms"),
        "aps3_fire_p99_ms": aps_p99,
        "aps3_fire_max_ms": _value(their_fire, "max_ms"),
        "ratio_fire_p50": _ratio(_value(our_fire, "p50_ms"), _value(their_fire, "p50_ms")),
        "ratio_fire_p99": _ratio(fire_p99, aps_p99),
        "taskbus_burst_shipped_tasks_s": burst_rate,
        "taskbus_burst_shipped_late_p50_s": _value(burst, "late_p50_s"),
        "taskbus_burst_shipped_late_p99_s": burst_p99,
        "taskbus_1_executor_tasks_s": _value(one, "tasks_s"),
        "taskbus_2_executors_tasks_s": _value(two, "tasks_s"),
        "create_many_tasks_s": create_many,
        "one_by_one_create_tasks_s": _value(batched, "one_by_one_tasks_s"),
        "targets_met": {
            "taskbus_ge_5000_tasks_s": None if tb is None else tb >= 5_000,
            "ge_3x_celery_redis": _met(ratios["celery_redis"], 3.0),
            "ge_5x_aps3_sqlite": _met(ratios["aps3_sqlite"], 5.0),
            "ahead_of_huey_sqlite": _met(ratios["huey_sqlite"], 1.0, strictly=True),
            "ahead_of_dbos_sqlite": _met(ratios["dbos_sqlite"], 1.0, strictly=True),
            "fire_p99_le_aps3_memory": None
            if fire_p99 is None or aps_p99 is None
            else fire_p99 <= aps_p99,
            "burst_shipped_ge_2000_tasks_s": None if burst_rate is None else burst_rate >= 2_000,
            "burst_shipped_late_p99_le_10_s": None if burst_p99 is None else burst_p99 <= 10.0,
            "create_many_ge_20000_tasks_s": None
            if create_many is None
            else create_many >= CREATE_MANY_TARGET,
        },
        "versions": versions,
        "git": _git_state(),
        "cpus": os.cpu_count(),
        "seconds": seconds,
        "runs": results,
    }
    print(json.dumps(summary, default=str, separators=(",", ":")))
    failed = any("error" in part for result in results.values() for part in _parts(result))
    return 1 if failed else 0


def _parts(result: dict[str, Any]) -> list[dict[str, Any]]:
    """A phase's result, or its sub-results (``scale_out`` holds one per executor count)."""
    nested = [v for v in result.values() if isinstance(v, dict) and "error" not in result]
    return nested if nested and all("tasks_s" in v or "error" in v for v in nested) else [result]


def _git_state() -> str:
    """The commit measured, ``+dirty`` when the tree has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}+dirty" if dirty else head or "unknown"


def _met(ratio: float | None, at_least: float, *, strictly: bool = False) -> bool | None:
    if ratio is None:
        return None
    return ratio > at_least if strictly else ratio >= at_least


if __name__ == "__main__":
    sys.exit(main())
