"""taskbus against the peers a user would pick instead: APScheduler 3 and Celery + Redis.

Run ``python benchmarks/peers.py [--quick]`` from the repository root. It prints a table and, as
its last line, one JSON object. Missing peers are installed first: APScheduler 3, SQLAlchemy and
Celery with its Redis client into the running interpreter (pip; ``pip install -e '.[bench]'``
does the same), ``redis-server`` from Debian's packages (``apt-get install -y redis-server``).

Every measurement runs in a fresh process, one after the other, so that no peer's imports,
threads or memory weigh on another's and no two of them compete for the two cores:

- **throughput**: N no-op tasks all due at once; tasks per second from the moment they are due
  until every one was fired, executed and (where the peer keeps results) its result stored.

  - *taskbus*: an embedded ``Taskbus`` (every actor in one asyncio process, inproc bus only,
    the encrypted libSQL file in a temporary directory with the shipped durability,
    ``synchronous = FULL``), N ``user.*`` tasks of ``benchmarks.noop_tasks:Noop`` created over
    the client with the schedule ``at:<T0>``, T0 a moment after the last creation (creation is not
    timed; its rate is shown). Timed from T0 until the ``user`` executor has settled N runs: for
    each, the outcome committed in the store, then the result queued for the scheduler (the
    executor's counters, read in process every 10 ms; built-in tasks run on other executors).
  - *APScheduler 3*: ``AsyncIOScheduler`` (its default executor for a coroutine job runs it on
    the event loop), N ``date`` jobs running an empty coroutine, ``misfire_grace_time`` one hour;
    added while the scheduler is paused, due at once, and timed from ``resume()`` until the job
    counted its N-th run. Once with the memory job store, once with the SQLAlchemy job store on a
    SQLite file (SQLAlchemy's defaults: rollback journal, ``synchronous = FULL``).
  - *Celery + Redis*: a local ``redis-server`` (its default configuration), a worker
    ``celery -A benchmarks.celery_noop worker --pool=solo`` as a process of its own; N
    ``noop.delay()`` sent from the measuring process and timed from the first send until every
    result is in Redis and read back (``ResultSet.join_native``).

- **firing latency**: M one-shot tasks due at distinct instants 10 ms apart; a fire's latency is
  the wall time at which the task's code starts minus its scheduled instant. taskbus: ``at:``
  tasks of ``benchmarks.noop_tasks:Latency`` (the scheduler records the fire in the store, with
  an fsync, before it dispatches it). APScheduler 3: ``AsyncIOScheduler``, memory job store,
  ``date`` jobs.

- **create_many** (``--only create_many``, taskbus only): 20,000 tasks (``--create-many N``)
  created through ``TaskbusClient.create_many`` on an embedded taskbus, in requests of 1,000
  (``scheduler.task.create_many``: one store write each), four in flight; then 1,000 more one
  request each (``client.create``, 32 in flight), for comparison. Every task is due in a day.
  JSON ``create_many_tasks_s`` (target 20,000) and ``one_by_one_create_tasks_s``; the phase
  also reports the loop thread's and the process's CPU (the difference: mostly the store's
  thread). ``--profile FILE`` profiles the batched creations (the loop thread).

taskbus runs with the shipped settings except concurrency and admission: ``scheduler
.max_concurrent_tasks`` and ``categories.user.concurrency`` 64 (shipped: 10 and 5) and
``resources.max_cpu_percent`` 100 (shipped: 80, which defers starts while the benchmark itself
keeps the CPU busy); ``--taskbus-shipped`` runs it with the shipped values instead.
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
import subprocess
import sys
import tempfile
import time
from collections import Counter
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

from benchmarks._measure import (  # noqa: E402
    BenchError,
    aps3_fire_latencies,
    latency_summary,
    print_aligned,
)


@dataclass(frozen=True, slots=True)
class Plan:
    tasks: int  # N, the throughput rows
    repeats: int  # throughput runs per side (the median is reported)
    fires: int  # M, the latency rows
    spacing_ms: float
    shipped: bool = False  # taskbus with the shipped concurrency and admission settings
    mailbox: int = 0  # actors.mailbox_size for taskbus (0: the shipped 1,000)
    profile: str = ""  # cProfile the taskbus throughput window (event-loop thread) into this file
    create_many: int = 20_000  # tasks the create_many row creates in batches
    one_by_one: int = 1_000  # tasks it creates one request each, for comparison


QUICK = Plan(tasks=10_000, repeats=1, fires=300, spacing_ms=10.0)
FULL = Plan(tasks=10_000, repeats=3, fires=1_000, spacing_ms=10.0)

TUNED = {
    "scheduler.max_concurrent_tasks": 64,
    "categories.user.concurrency": 64,
    "resources.max_cpu_percent": 100.0,
}
CREATE_CONCURRENCY = 32  # creations in flight (the scheduler actor serves 32 requests at once)
CALIBRATION_TASKS = 200  # created (and deleted) first to learn how long N creations take
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


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


# ------------------------------------------------------------------------------ taskbus


def _taskbus_settings(directory: str, plan: Plan) -> Any:
    from config import load_settings

    overrides: dict[str, object] = {"paths.data_dir": directory, "log_level": "warning"}
    if not plan.shipped:
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


def taskbus_throughput(plan: Plan) -> dict[str, Any]:
    from taskbus import Taskbus

    warnings = _watch_logs()

    async def main(directory: str) -> dict[str, Any]:
        settings = _taskbus_settings(directory, plan)
        async with Taskbus(settings, task_modules=["benchmarks.noop_tasks"], endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)  # a scheduler leads
            due = await _due_after_creating(client, plan.tasks)
            instant = f"at:{due.isoformat()}"
            specs = [
                (f"user.noop_{i:05d}", "benchmarks.noop_tasks:Noop", instant)
                for i in range(plan.tasks)
            ]
            created = time.perf_counter()
            await _create_all(client, specs)
            create_s = time.perf_counter() - created
            margin_s = (due - datetime.now(UTC)).total_seconds()
            if margin_s <= 0.05:
                raise BenchError(f"creating {plan.tasks} tasks ran {-margin_s:.1f} s past T0")
            counters = _counters(bus)  # the scheduler's
            settled = _counters(bus, "executor-user")  # runs of user.* tasks only

            def finished() -> int:
                return sum(settled[k] for k in ("succeeded", "failed", "skipped", "timed_out"))

            base, failed_before = finished(), settled["failed"]
            fires_before = counters["fires"]
            rss_before = _rss_mb()
            await asyncio.sleep(margin_s)
            t0 = due.timestamp()
            loop_cpu, process_cpu = time.thread_time(), time.process_time()
            profiler = cProfile.Profile() if plan.profile else None
            if profiler is not None:
                profiler.enable()
            deadline = time.monotonic() + PHASE_TIMEOUT_S
            done, progressed = 0, time.monotonic()
            while done < plan.tasks:
                now = time.monotonic()
                if now > deadline or now - progressed > STALL_S:
                    why = "no result" if now - progressed > STALL_S else "timed out"
                    raise BenchError(
                        f"taskbus stalled: {why} for {now - progressed:.0f} s, "
                        f"{done:,} of {plan.tasks:,} results after {time.time() - t0:.1f} s; "
                        f"scheduler counters {dict(counters)}, executor {dict(settled)}"
                    )
                await asyncio.sleep(POLL_S)
                if finished() - base > done:
                    done, progressed = finished() - base, now
            elapsed = time.time() - t0
            loop_cpu, process_cpu = time.thread_time() - loop_cpu, time.process_time() - process_cpu
            if profiler is not None:
                profiler.disable()
                profiler.dump_stats(plan.profile)
            # A check in the store, on a sample: each task's one run is stored as succeeded.
            # (scheduler.stats cannot do it: with 10,000 tasks the store's per-task statistics
            # exceed bus.max_message_bytes and the scheduler's ask times out.)
            sample = random.Random(7).sample(range(plan.tasks), min(50, plan.tasks))
            stored = 0
            for index in sample:
                runs = await client.history(f"user.noop_{index:05d}", limit=5)
                stored += len(runs) == 1 and runs[0].get("success") is True
            return {
                "tasks_s": round(plan.tasks / elapsed, 1),
                "seconds": round(elapsed, 3),
                "create_s": round(create_s, 2),
                "creates_s": round(plan.tasks / create_s, 1),
                "fires": counters["fires"] - fires_before,
                "settled": finished() - base,
                "failed": settled["failed"] - failed_before,
                "missed": counters["missed"],
                "sample_stored_ok": f"{stored}/{len(sample)}",
                "executor_deferred": _counters(bus, "executor-user")["deferred"],
                "loop_thread_cpu_s": round(loop_cpu, 2),
                "process_cpu_s": round(process_cpu, 2),
                "rss_growth_mb": round(_rss_mb() - rss_before, 1),
            }

    with tempfile.TemporaryDirectory(prefix="taskbus-peers-") as directory:
        try:
            result = asyncio.run(main(directory))
        except BenchError as exc:  # a stall: what the logs say is the interesting part
            result = {"error": str(exc)}
    result.update(warnings.report())
    return result


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

    with tempfile.TemporaryDirectory(prefix="taskbus-peers-") as directory:
        try:
            result = asyncio.run(main(directory))
        except BenchError as exc:
            result = {"error": str(exc)}
    result.update(warnings.report())
    return result


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
            "tasks_s": round(plan.tasks / elapsed, 1),
            "seconds": round(elapsed, 3),
            "create_s": round(create_s, 2),
            "creates_s": round(plan.tasks / create_s, 1),
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


def celery_throughput(plan: Plan, redis_url: str) -> dict[str, Any]:
    os.environ["PEERS_REDIS_URL"] = redis_url
    from celery.result import ResultSet

    from benchmarks.celery_noop import app, noop

    deadline = time.monotonic() + CELERY_READY_S
    while not app.control.ping(timeout=0.5):
        if time.monotonic() > deadline:
            raise BenchError(f"no Celery worker answered a ping within {CELERY_READY_S:.0f} s")
    warm = [noop.delay() for _ in range(100)]  # connections, the worker's first tasks
    ResultSet(warm).join_native(timeout=60, interval=0.01)

    started = time.perf_counter()
    results = [noop.delay() for _ in range(plan.tasks)]
    sent_s = time.perf_counter() - started
    values = ResultSet(results).join_native(timeout=PHASE_TIMEOUT_S, interval=0.01)
    elapsed = time.perf_counter() - started
    succeeded = sum(1 for r in results if r.successful())
    if len(values) != plan.tasks or succeeded != plan.tasks:
        raise BenchError(f"celery: {len(values)} results, {succeeded} successful")
    return {
        "tasks_s": round(plan.tasks / elapsed, 1),
        "seconds": round(elapsed, 3),
        "send_s": round(sent_s, 2),
        "succeeded": succeeded,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


def _stop(process: subprocess.Popen[bytes] | None, grace_s: float = 10.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def run_celery(plan: Plan) -> dict[str, Any]:
    """redis-server and a solo worker started here, the sender in a fresh process; both stopped
    whatever happens."""
    server = ensure_redis_server()
    redis_version = subprocess.run(
        [server, "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    port = _free_port()
    url = f"redis://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="taskbus-peers-redis-") as directory:
        redis_log = open(Path(directory) / "redis.log", "wb")  # noqa: SIM115
        worker_log = open(Path(directory) / "worker.log", "wb")  # noqa: SIM115
        redis: subprocess.Popen[bytes] | None = None
        worker: subprocess.Popen[bytes] | None = None
        try:
            redis = subprocess.Popen(
                [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory],
                stdout=redis_log,
                stderr=subprocess.STDOUT,
            )
            _wait_for_port(port, redis)
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
                env=os.environ | {"PEERS_REDIS_URL": url, "PYTHONPATH": str(_ROOT)},
                stdout=worker_log,
                stderr=subprocess.STDOUT,
            )
            runs = [in_fresh_process("celery_throughput", plan, url) for _ in range(plan.repeats)]
        finally:
            _stop(worker)
            _stop(redis)
            redis_log.close()
            worker_log.close()
            tail = (Path(directory) / "worker.log").read_text(errors="replace")[-2000:]
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


def ensure_peers() -> dict[str, str]:
    wanted = {
        "apscheduler": "apscheduler>=3.10,<4",
        "sqlalchemy": "sqlalchemy>=2",
        "celery": "celery[redis]>=5.3",
        "redis": "celery[redis]>=5.3",
    }
    missing = sorted({spec for module, spec in wanted.items() if not _importable(module)})
    if missing:
        print(f"installing {', '.join(missing)} into this environment (the 'bench' extra)")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
    return {name: version(name) for name in ("apscheduler", "sqlalchemy", "celery", "redis")}


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _value(result: dict[str, Any], key: str) -> float | None:
    value = result.get(key)
    return float(value) if isinstance(value, int | float) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


def _cell(value: float | None, digits: int = 1) -> str:
    return "error" if value is None else f"{value:,.{digits}f}"


PHASES = (
    "taskbus",
    "aps_memory",
    "aps_sqlite",
    "celery",
    "taskbus_latency",
    "aps_latency",
    "create_many",
)
OURS_ONLY = {"taskbus", "taskbus_latency", "create_many"}  # phases that need no peer installed
CREATE_MANY_TARGET = 20_000.0  # creations per second, in batches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per row (~3 min)")
    parser.add_argument("--tasks", type=int, help="N, the tasks of the throughput rows (10,000)")
    parser.add_argument("--only", help=f"comma-separated phases of {','.join(PHASES)}")
    parser.add_argument(
        "--taskbus-shipped",
        action="store_true",
        help="taskbus with the shipped concurrency (10 / user 5) and CPU admission (80 %%)",
    )
    parser.add_argument("--mailbox", type=int, default=0, help="taskbus actors.mailbox_size")
    parser.add_argument("--create-many", type=int, help="tasks of the create_many row (20,000)")
    parser.add_argument(
        "--profile", default="", help="cProfile taskbus's timed window (its loop thread) into FILE"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = replace(
        plan,
        tasks=args.tasks or plan.tasks,
        shipped=args.taskbus_shipped,
        mailbox=args.mailbox,
        create_many=args.create_many or plan.create_many,
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
        "taskbus_latency": lambda: in_fresh_process("taskbus_latency", plan),
        "aps_latency": lambda: in_fresh_process("aps_latency", plan),
        "create_many": lambda: in_fresh_process("taskbus_create_many", plan),
    }
    for phase in phases:
        print(f"[{time.monotonic() - begun:6.1f} s] {phase} ...", flush=True)
        try:
            results[phase] = runners[phase]()
        except Exception as exc:  # a missing redis, a failed install...: the other rows stand
            results[phase] = {"error": f"{phase}: {exc!r}"}
        if "error" in results[phase]:
            print(f"  failed: {results[phase]['error']}", file=sys.stderr, flush=True)

    empty: dict[str, Any] = {}
    ours = results.get("taskbus", empty)
    tb = _value(ours, "tasks_s")
    peers = {
        "aps3_memory": _value(results.get("aps_memory", empty), "tasks_s"),
        "aps3_sqlite": _value(results.get("aps_sqlite", empty), "tasks_s"),
        "celery_redis": _value(results.get("celery", empty), "tasks_s"),
    }
    our_fire = results.get("taskbus_latency", empty)
    their_fire = results.get("aps_latency", empty)
    n = f"{plan.tasks:,}"
    rows = [
        [f"{n} no-op tasks due at once, tasks/s", "", "", ""],
        ["  vs APScheduler 3, memory store", _cell(tb), _cell(peers["aps3_memory"]), ""],
        ["  vs APScheduler 3, SQLAlchemy on SQLite", _cell(tb), _cell(peers["aps3_sqlite"]), ""],
        ["  vs Celery + Redis (solo worker)", _cell(tb), _cell(peers["celery_redis"]), ""],
    ]
    for row, peer in zip(rows[1:], peers.values(), strict=True):
        ratio = _ratio(tb, peer)
        row[3] = "n/a" if ratio is None else f"{ratio:.2f}"
    for label, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms")):
        a, b = _value(our_fire, key), _value(their_fire, key)
        ratio = _ratio(a, b)
        rows.append(
            [
                f"firing latency {label} (ms) vs APScheduler 3, memory",
                _cell(a, 2),
                _cell(b, 2),
                "n/a" if ratio is None else f"{ratio:.2f}",
            ]
        )
    if not {"taskbus", "aps_memory", "aps_sqlite", "celery"} & set(results):
        del rows[:4]  # no throughput row was run
    if not {"taskbus_latency", "aps_latency"} & set(results):
        del rows[-3:]  # no latency row was run
    batched = results.get("create_many", empty)
    create_many = _value(batched, "create_many_tasks_s")
    if "create_many" in results:
        rows.append(
            [
                f"{plan.create_many:,} creations in batches of 1,000, tasks/s "
                "(peer: one request each)",
                _cell(create_many),
                _cell(_value(batched, "one_by_one_tasks_s")),
                _cell(_ratio(create_many, _value(batched, "one_by_one_tasks_s")), 2),
            ]
        )
    print()
    print_aligned(["measure", "taskbus", "peer", "taskbus / peer"], rows)
    seconds = round(time.monotonic() - begun, 1)
    config = "shipped settings" if plan.shipped else "concurrency 64, CPU admission off"
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
    summary: dict[str, Any] = {
        "benchmark": "taskbus.peers",
        "mode": mode,
        "n": plan.tasks,
        "fires": plan.fires,
        "taskbus_settings": "shipped" if plan.shipped else TUNED,
        "taskbus_tasks_s": tb,
        "aps3_memory_tasks_s": peers["aps3_memory"],
        "aps3_sqlite_tasks_s": peers["aps3_sqlite"],
        "celery_redis_tasks_s": peers["celery_redis"],
        "ratio_taskbus_vs_aps3_memory": _ratio(tb, peers["aps3_memory"]),
        "ratio_taskbus_vs_aps3_sqlite": _ratio(tb, peers["aps3_sqlite"]),
        "ratio_taskbus_vs_celery_redis": _ratio(tb, peers["celery_redis"]),
        "taskbus_fire_p50_ms": _value(our_fire, "p50_ms"),
        "taskbus_fire_p99_ms": fire_p99,
        "taskbus_fire_max_ms": _value(our_fire, "max_ms"),
        "aps3_fire_p50_ms": _value(their_fire, "p50_ms"),
        "aps3_fire_p99_ms": aps_p99,
        "aps3_fire_max_ms": _value(their_fire, "max_ms"),
        "ratio_fire_p50": _ratio(_value(our_fire, "p50_ms"), _value(their_fire, "p50_ms")),
        "ratio_fire_p99": _ratio(fire_p99, aps_p99),
        "create_many_tasks_s": create_many,
        "one_by_one_create_tasks_s": _value(batched, "one_by_one_tasks_s"),
        "targets_met": {
            "taskbus_ge_5000_tasks_s": None if tb is None else tb >= 5_000,
            "ge_3x_celery_redis": _met(_ratio(tb, peers["celery_redis"]), 3.0),
            "ge_5x_aps3_sqlite": _met(_ratio(tb, peers["aps3_sqlite"]), 5.0),
            "fire_p99_le_aps3_memory": None
            if fire_p99 is None or aps_p99 is None
            else fire_p99 <= aps_p99,
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
    return 1 if any("error" in r for r in results.values()) else 0


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


def _met(ratio: float | None, at_least: float) -> bool | None:
    return None if ratio is None else ratio >= at_least


if __name__ == "__main__":
    sys.exit(main())
