"""Durable runs: taskbus's steps, signals, durable sleep and suspended runs, against DBOS.

Run ``python benchmarks/runs.py [--quick]`` from the repository root. It prints a table and, as
its last line, one JSON object. DBOS (pip package ``dbos``, the ``bench`` extra) is installed
into the running interpreter first if missing. Every measurement runs in a fresh process, one
after the other.

taskbus is an embedded ``Taskbus`` (every actor in one asyncio process, inproc bus, the encrypted
libSQL file in a temporary directory with the shipped durability, ``synchronous = FULL``), with
the task classes of ``benchmarks/run_tasks.py``; concurrency 64 and CPU admission off as
``peers.py --taskbus-tuned``. DBOS runs in-process on its SQLite system database (a file in a
temporary directory; DBOS's own SQLite settings), its workflows and steps plain (synchronous)
functions.

- **steps/s**: one run of ``STEPS`` empty steps, each committed before the next starts (full
  mode: the median of three runs, each in a fresh process).
  taskbus: a ``user`` task whose ``execute`` awaits ``ctx.step("s", noop, key=i)`` in a loop,
  timed inside the task with ``time.perf_counter`` from before the first step to after the last
  (so the fire, dispatch and settlement are not in it). DBOS: a ``@DBOS.workflow`` calling a
  ``@DBOS.step`` (returning None) in a loop, timed inside the workflow the same way.
- **signal latency**: one run waits in a loop for its messages; the benchmark sends the next
  one once the run is waiting again (and 5 ms later), stamping ``time.perf_counter()`` in the
  payload; the latency is taken inside the run when the wait returns. taskbus:
  ``TaskbusClient.signal(run, "ping", payload)`` -> ``ctx.wait_signal("ping")`` (the scheduler
  stores the signal in the run's inbox and pushes it to the executor, whose ``wait_signal``
  stores its step and returns). DBOS: ``DBOS.send(workflow_id, payload, topic="ping")`` ->
  ``DBOS.recv("ping")`` in the workflow; on SQLite DBOS learns of a message by polling every
  ``notification_listener_polling_interval_sec`` (default 1 s; there is no in-process wake-up),
  so DBOS is measured twice: with its default, and with a 10 ms poll (``dbos_fastpoll_*``).
- **signal to a suspended run** (taskbus only): the same, but each signal is sent once the run's
  attempt has ended waiting (the executor settled it as suspended, after ``suspend_after_s``,
  1 s): the signal wakes the run, the scheduler fires a new attempt, which replays its kept
  waits and returns from the next.
- **resume**: ``RESUME`` tasks due at once, each ``ctx.sleep_until(its instant + SLEEP_S)``, so
  every run suspends (its attempt ends, nothing stays in the executor); once all are stored as
  sleeping the process stops. A second fresh process, started after their wake time, starts
  taskbus on the same directory: ``taskbus_resume_1k_s`` is from the start of that process's
  ``Taskbus`` until the executor settled every run as succeeded (each woken by the scheduler's
  takeover, replayed, and finished).
- **sleeping runs' memory**: ``SLEEPING`` tasks due at once, each sleeping an hour; the RSS of the
  process once all are suspended minus its RSS after the tasks were created and before they
  were due (``gc.collect()`` before each reading), with the executor's runs in progress and the
  asyncio tasks alive at each point. In full mode also a control (tasks that return at once,
  ``benchmarks/noop_tasks.py:Noop``: what firing and settling 10,000 runs leaves behind whether
  or not they sleep), and taskbus restarted on each of the two directories: the RSS with 10,000
  runs asleep (taken over into the scheduler's wake heap) minus the RSS with 10,000 finished.

Measurements that need an API taskbus does not have yet report ``null`` and say why.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
_ROOT = _HERE.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_ROOT) not in sys.path:
    sys.path.append(str(_ROOT))

from benchmarks._measure import BenchError, latency_summary, print_aligned  # noqa: E402


@dataclass(frozen=True, slots=True)
class Plan:
    steps: int  # empty steps in the one timed run
    step_runs: int  # fresh processes per side for the steps row (the median is reported)
    signals: int  # signals sent one at a time
    suspended_signals: int  # signals sent one at a time to a suspended run
    slow_signals: int  # DBOS with its default 1 s poll: each takes about a second
    resume: int  # runs suspended, then resumed by a restarted taskbus
    sleeping: int  # runs left suspended for the memory reading
    sleep_s: float = 0.0  # resume: how long the runs sleep (0: from the plan's size)
    control: bool = False  # sleeping: also the Noop control, and both restarted


QUICK = Plan(
    steps=200,
    step_runs=1,
    signals=50,
    suspended_signals=20,
    slow_signals=20,
    resume=1_000,
    sleeping=10_000,
)
FULL = Plan(
    steps=1_000,
    step_runs=3,
    signals=300,
    suspended_signals=50,
    slow_signals=50,
    resume=1_000,
    sleeping=10_000,
    control=True,
)

TUNED = {
    "scheduler.max_concurrent_tasks": 64,
    "categories.user.concurrency": 64,
    "resources.max_cpu_percent": 100.0,
}
SIGNAL_GAP_S = 0.005  # between the run waiting again and the next send
DBOS_FAST_POLL_S = 0.01
PHASE_TIMEOUT_S = 600.0
MODULES = ["benchmarks.run_tasks", "benchmarks.noop_tasks"]  # noop_tasks: peers.py's calibration
FAR = "at:2099-01-01T00:00:00+00:00"  # tasks that only run when triggered


# ------------------------------------------------------------------------------ what exists


def missing_apis() -> list[str]:
    """The names this benchmark needs from the durable-runs work that taskbus lacks."""
    from taskbus import TaskbusClient
    from tasks import TaskContext

    wanted = {
        "TaskbusClient.signal": hasattr(TaskbusClient, "signal"),
        "TaskContext.wait_signal": hasattr(TaskContext, "wait_signal"),
        "TaskContext.sleep_until": hasattr(TaskContext, "sleep_until"),
    }
    return [name for name, present in wanted.items() if not present]


# ------------------------------------------------------------------------------ taskbus


def _settings(directory: str) -> Any:
    from config import load_settings

    overrides: dict[str, object] = {"paths.data_dir": directory, "log_level": "warning"}
    overrides.update(TUNED)
    return load_settings(overrides=overrides, environ={})


def _executor(bus: Any) -> Any:
    return bus.system.instance("executor-user")


SETTLED = ("succeeded", "failed", "skipped", "timed_out", "suspended", "cancelled")


def _settled(executor: Any) -> int:
    return sum(executor.counters[k] for k in SETTLED)


async def _until(check: Any, what: str, timeout_s: float = PHASE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


def taskbus_steps(plan: Plan) -> dict[str, Any]:
    from benchmarks import run_tasks
    from benchmarks.peers import _watch_logs
    from taskbus import Taskbus

    warnings = _watch_logs()
    run_tasks.STEPS = plan.steps

    async def main(directory: str) -> dict[str, Any]:
        async with Taskbus(_settings(directory), task_modules=MODULES, endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)
            await client.create("user.steps", "benchmarks.run_tasks:Steps", FAR)
            sent = time.perf_counter()
            execution = await client.trigger("user.steps")
            await _until(lambda: bool(run_tasks.STEP_SECONDS), "the steps run")
            end_to_end = time.perf_counter() - sent
            seconds = run_tasks.STEP_SECONDS[0]
            run = await client.run(execution)
            stored = [s for s in run.get("steps", []) if s.get("status") == "succeeded"]
            return {
                "steps_s": round(plan.steps / seconds, 1),
                "steps": plan.steps,
                "seconds": round(seconds, 3),
                "per_step_ms": round(seconds / plan.steps * 1e3, 3),
                "trigger_to_end_s": round(end_to_end, 3),
                "steps_stored": len(stored) if stored else len(run.get("steps", [])),
            }

    with tempfile.TemporaryDirectory(prefix="taskbus-runs-") as directory:
        result = asyncio.run(main(directory))
    result.update(warnings.report())
    return result


def taskbus_signals(plan: Plan, suspended: bool = False) -> dict[str, Any]:
    """Signals to a run waiting in place (sent 5 ms after it waits again) or, ``suspended``, to
    a run whose attempt ended waiting (sent once the executor settled it as suspended: the
    signal wakes it, a new attempt replays its kept waits and the next one returns)."""
    from benchmarks import run_tasks
    from benchmarks.peers import _watch_logs
    from taskbus import Taskbus

    warnings = _watch_logs()
    count = plan.suspended_signals if suspended else plan.signals
    run_tasks.SIGNALS = count

    async def main(directory: str) -> dict[str, Any]:
        run_tasks.WAITING = waiting = asyncio.Event()
        async with Taskbus(_settings(directory), task_modules=MODULES, endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)
            await client.create("user.waiter", "benchmarks.run_tasks:Waiter", FAR)
            execution = await client.trigger("user.waiter")
            executor = _executor(bus)
            asks: list[float] = []
            for k in range(count):
                if suspended:
                    await _until(
                        lambda k=k: executor.counters["suspended"] > k, f"suspension {k + 1}", 60.0
                    )
                else:
                    try:
                        await asyncio.wait_for(waiting.wait(), 60.0)
                    except TimeoutError as exc:
                        raise BenchError(f"the run did not wait for signal {k}") from exc
                    waiting.clear()
                    await asyncio.sleep(SIGNAL_GAP_S)
                sent = time.perf_counter()
                await client.signal(execution, "ping", {"k": k, "t": sent})
                asks.append((time.perf_counter() - sent) * 1e3)
            await _until(lambda: len(run_tasks.SIGNAL_MS) >= count, "the last signal")
            summary = latency_summary(list(run_tasks.SIGNAL_MS.values()))
            summary["signal_ask_p50_ms"] = latency_summary(asks)["p50_ms"]
            summary["attempts"] = len(run_tasks.SIGNAL_ATTEMPTS)
            summary["executor_counters"] = dict(executor.counters)
            return summary

    with tempfile.TemporaryDirectory(prefix="taskbus-runs-") as directory:
        result = asyncio.run(main(directory))
    result.update(warnings.report())
    return result


def taskbus_signals_suspended(plan: Plan) -> dict[str, Any]:
    return taskbus_signals(plan, suspended=True)


async def _fire_sleepers(client: Any, count: int, task_class: str) -> datetime:
    """Creates ``count`` tasks of ``task_class`` all due at one instant T0 (after the creations,
    learnt as peers.py does) and returns T0."""
    from benchmarks.peers import _create_all, _due_after_creating

    due = await _due_after_creating(client, count)
    specs = [(f"user.sleep_{i:05d}", task_class, f"at:{due.isoformat()}") for i in range(count)]
    await _create_all(client, specs)
    if datetime.now(UTC) >= due:
        raise BenchError(f"creating {count} tasks ran past their instant")
    return due


async def _sleeping_count(client: Any) -> int:
    """Runs stored as sleeping (``TaskbusClient.runs`` pages through them, 100 an ask)."""
    return len(await client.runs(state="sleeping"))


def taskbus_suspend(plan: Plan, directory: str) -> dict[str, Any]:
    """The first half of the resume measurement: fire ``plan.resume`` sleepers, wait until each
    attempt ended suspended, stop. Returns the wake instant."""
    from benchmarks import run_tasks
    from benchmarks.peers import _watch_logs
    from taskbus import Taskbus

    warnings = _watch_logs()
    run_tasks.SLEEP_S = plan.sleep_s

    async def main() -> dict[str, Any]:
        async with Taskbus(_settings(directory), task_modules=MODULES, endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)
            executor = _executor(bus)
            due = await _fire_sleepers(client, plan.resume, "benchmarks.run_tasks:Sleeper")
            base = _settled(executor)
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await _until(lambda: _settled(executor) - base >= plan.resume, "every run to suspend")
            suspended_s = time.time() - due.timestamp()
            wake = due + timedelta(seconds=plan.sleep_s)
            if datetime.now(UTC) >= wake or run_tasks.SLEEPERS_DONE_AT:
                ended = len(run_tasks.SLEEPERS_DONE_AT)
                raise BenchError(f"the runs woke before taskbus stopped ({ended} ended)")
            sleeping = await _sleeping_count(client) if hasattr(client, "runs") else None
            return {
                "wake_at": wake.timestamp(),
                "started": len(run_tasks.SLEEPERS_STARTED),
                "stored_sleeping": sleeping,
                "fire_to_all_suspended_s": round(suspended_s, 3),
                "suspends_s": round(plan.resume / suspended_s, 1),
                "executor_counters": dict(executor.counters),
            }

    result = asyncio.run(main())
    result.update(warnings.report())
    return result


def taskbus_restart(plan: Plan, directory: str, wake_at: float) -> dict[str, Any]:
    """The second half: after the wake instant, start taskbus on the same directory and time
    until every run was woken, finished and settled."""
    from benchmarks import run_tasks
    from benchmarks.peers import _watch_logs
    from taskbus import Taskbus

    warnings = _watch_logs()
    time.sleep(max(0.0, wake_at + 0.5 - time.time()))

    async def main() -> dict[str, Any]:
        started = time.perf_counter()
        started_wall = time.time()
        async with Taskbus(_settings(directory), task_modules=MODULES, endpoints=()) as bus:
            up_s = time.perf_counter() - started
            executor = _executor(bus)
            await _until(
                lambda: executor.counters["succeeded"] >= plan.resume, "every run to finish"
            )
            seconds = time.perf_counter() - started
            client = await bus.client(timeout_s=60.0)
            sample = await client.history("user.sleep_00000", limit=5)
            done_at = sorted(run_tasks.SLEEPERS_DONE_AT)
            return {
                "resume_s": round(seconds, 3),
                "taskbus_up_s": round(up_s, 3),
                "resumed_runs_s": round(plan.resume / seconds, 1),
                "first_end_after_start_s": round(done_at[0] - started_wall, 3) if done_at else None,
                "ends_in_task": len(run_tasks.SLEEPERS_DONE_AT),
                "late_after_wake_s": round(started_wall - wake_at, 3),
                "sample_history": [(r.get("trigger"), r.get("success")) for r in sample],
                "executor_counters": dict(executor.counters),
            }

    result = asyncio.run(main())
    result.update(warnings.report())
    return result


def _rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096 / 1e6


def taskbus_sleeping(plan: Plan, control: bool, directory: str) -> dict[str, Any]:
    from benchmarks import run_tasks
    from benchmarks.peers import _watch_logs
    from taskbus import Taskbus

    warnings = _watch_logs()
    run_tasks.SLEEP_S = 3600.0
    task_class = "benchmarks.noop_tasks:Noop" if control else "benchmarks.run_tasks:Sleeper"

    async def main() -> dict[str, Any]:
        async with Taskbus(
            _settings(directory),
            task_modules=MODULES,
            endpoints=(),
        ) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)
            executor = _executor(bus)
            due = await _fire_sleepers(client, plan.sleeping, task_class)
            base = _settled(executor)
            rss_before = _rss_mb()
            tasks_before = len(asyncio.all_tasks())
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            await _until(lambda: _settled(executor) - base >= plan.sleeping, "every run to settle")
            settle_s = time.time() - due.timestamp()
            await asyncio.sleep(2.0)  # the last results reach the scheduler
            rss_after = _rss_mb()
            tasks_after = len(asyncio.all_tasks())
            running = sum(executor.running.values())
            sleepers = getattr(bus.system.instance("scheduler"), "_sleepers", None)
            sleeping = (
                await _sleeping_count(client) if not control and hasattr(client, "runs") else None
            )
            return {
                "rss_growth_mb": round(rss_after - rss_before, 1),
                "rss_before_mb": round(rss_before, 1),
                "rss_after_mb": round(rss_after, 1),
                "per_run_kb": round((rss_after - rss_before) * 1e3 / plan.sleeping, 2),
                "executor_slots_in_use": running,
                "scheduler_wake_heap": None if sleepers is None else len(sleepers),
                "asyncio_tasks_before": tasks_before,
                "asyncio_tasks_after": tasks_after,
                "stored_sleeping": sleeping,
                "fire_to_all_settled_s": round(settle_s, 2),
                "executor_counters": dict(executor.counters),
            }

    result = asyncio.run(main())
    result.update(warnings.report())
    return result


def taskbus_held(plan: Plan, control: bool, directory: str) -> dict[str, Any]:
    """taskbus restarted on what ``taskbus_sleeping`` left: its RSS once the scheduler leads
    and (not ``control``) has taken every sleeping run over into its wake heap."""
    from benchmarks.peers import _watch_logs
    from taskbus import Taskbus

    warnings = _watch_logs()

    async def main() -> dict[str, Any]:
        started = time.perf_counter()
        async with Taskbus(_settings(directory), task_modules=MODULES, endpoints=()) as bus:
            client = await bus.client(timeout_s=60.0)
            await client.stats(wait_s=30.0)
            sleepers = getattr(bus.system.instance("scheduler"), "_sleepers", None)
            if not control and sleepers is not None:
                await _until(lambda: len(sleepers) >= plan.sleeping, "the takeover", 120.0)
            taken_s = time.perf_counter() - started
            await asyncio.sleep(2.0)
            return {
                "rss_mb": round(_rss_mb(), 1),
                "scheduler_wake_heap": None if sleepers is None else len(sleepers),
                "start_to_taken_over_s": round(taken_s, 2),
                "executor_slots_in_use": sum(_executor(bus).running.values()),
            }

    result = asyncio.run(main())
    result.update(warnings.report())
    return result


def run_sleeping(plan: Plan) -> dict[str, Any]:
    """10,000 runs put to sleep (and, as a control, 10,000 that return at once), each in a
    fresh process; then taskbus restarted on each directory and its RSS read."""
    with (
        tempfile.TemporaryDirectory(prefix="taskbus-runs-") as asleep,
        tempfile.TemporaryDirectory(prefix="taskbus-runs-") as finished,
    ):
        result = in_fresh_process("taskbus_sleeping", plan, False, asleep)
        if "error" in result or not plan.control:
            return result
        result["control"] = in_fresh_process("taskbus_sleeping", plan, True, finished)
        held = in_fresh_process("taskbus_held", plan, False, asleep)
        held_control = in_fresh_process("taskbus_held", plan, True, finished)
    result["restarted"], result["restarted_control"] = held, held_control
    mb, control_mb = _value(held, "rss_mb"), _value(held_control, "rss_mb")
    if mb is not None and control_mb is not None:
        result["restarted_rss_growth_mb"] = round(mb - control_mb, 1)
    return result


# ------------------------------------------------------------------------------ DBOS


def _dbos(directory: str, poll_s: float | None = None) -> Any:
    import logging

    from dbos import DBOS

    config: dict[str, Any] = {
        "name": "taskbus-bench",
        "system_database_url": f"sqlite:///{directory}/dbos.sqlite",
        "log_level": "WARNING",
    }
    if poll_s is not None:
        config["notification_listener_polling_interval_sec"] = poll_s
    DBOS(config=config)  # type: ignore[arg-type]
    logging.getLogger("dbos").setLevel(logging.WARNING)
    return DBOS


def dbos_steps(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="dbos-runs-") as directory:
        DBOS = _dbos(directory)

        @DBOS.step()  # type: ignore[untyped-decorator]
        def noop_step(index: int) -> None:
            return None

        @DBOS.workflow()  # type: ignore[untyped-decorator]
        def steps_workflow(count: int) -> float:
            started = time.perf_counter()
            for index in range(count):
                noop_step(index)
            return time.perf_counter() - started

        DBOS.launch()
        try:
            sent = time.perf_counter()
            seconds = DBOS.start_workflow(steps_workflow, plan.steps).get_result()
            end_to_end = time.perf_counter() - sent
            recorded = len(DBOS.list_workflow_steps(DBOS.list_workflows()[0].workflow_id))
        finally:
            DBOS.destroy(destroy_registry=True)
    return {
        "steps_s": round(plan.steps / seconds, 1),
        "steps": plan.steps,
        "seconds": round(seconds, 3),
        "per_step_ms": round(seconds / plan.steps * 1e3, 3),
        "start_to_result_s": round(end_to_end, 3),
        "steps_stored": recorded,
    }


def dbos_signals(plan: Plan, poll_s: float | None = None) -> dict[str, Any]:
    count = plan.signals if poll_s is not None else plan.slow_signals
    latencies: dict[int, float] = {}
    waiting = threading.Event()
    with tempfile.TemporaryDirectory(prefix="dbos-runs-") as directory:
        DBOS = _dbos(directory, poll_s)

        @DBOS.workflow()  # type: ignore[untyped-decorator]
        def waiter(count: int) -> int:
            for _ in range(count):
                waiting.set()
                payload = DBOS.recv("ping", timeout_seconds=60)
                now = time.perf_counter()
                key = int(payload["k"])
                latencies.setdefault(key, (now - float(payload["t"])) * 1e3)
            return count

        DBOS.launch()
        try:
            handle = DBOS.start_workflow(waiter, count)
            sends: list[float] = []
            for k in range(count):
                if not waiting.wait(60.0):
                    raise BenchError(f"the DBOS workflow did not wait for message {k}")
                waiting.clear()
                time.sleep(SIGNAL_GAP_S)
                sent = time.perf_counter()
                DBOS.send(handle.workflow_id, {"k": k, "t": sent}, topic="ping")
                sends.append((time.perf_counter() - sent) * 1e3)
            handle.get_result()
        finally:
            DBOS.destroy(destroy_registry=True)
    summary = latency_summary(list(latencies.values()))
    summary["send_p50_ms"] = latency_summary(sends)["p50_ms"]
    summary["poll_s"] = poll_s if poll_s is not None else "default (1.0)"
    return summary


def dbos_signals_fast(plan: Plan) -> dict[str, Any]:
    return dbos_signals(plan, DBOS_FAST_POLL_S)


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


def median_steps(target: str, plan: Plan) -> dict[str, Any]:
    runs = [in_fresh_process(target, plan) for _ in range(plan.step_runs)]
    good = sorted((r for r in runs if "error" not in r), key=lambda r: r["steps_s"])
    if not good:
        return runs[0]
    chosen = dict(good[(len(good) - 1) // 2])
    chosen["runs_steps_s"] = [r["steps_s"] for r in good]
    return chosen


def run_resume(plan: Plan) -> dict[str, Any]:
    sleep_s = plan.sleep_s or max(10.0, plan.resume / 100)  # ~1 s per 1,000 here: margin
    plan = replace(plan, sleep_s=sleep_s)
    with tempfile.TemporaryDirectory(prefix="taskbus-runs-") as directory:
        suspend = in_fresh_process("taskbus_suspend", plan, directory)
        if "error" in suspend:
            return suspend
        restart = in_fresh_process("taskbus_restart", plan, directory, suspend["wake_at"])
    if "error" in restart:
        restart["suspend"] = suspend
        return restart
    return {**restart, "sleep_s": sleep_s, "suspend": suspend}


def ensure_dbos() -> str:
    if importlib.util.find_spec("dbos") is None:
        print("installing dbos into this environment (the 'bench' extra)", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "dbos"], check=True)
    return version("dbos")


def _value(result: dict[str, Any] | None, key: str) -> float | None:
    value = (result or {}).get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def _cell(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


PHASES = (
    "taskbus_steps",
    "dbos_steps",
    "taskbus_signals",
    "taskbus_signals_suspended",
    "dbos_signals",
    "dbos_signals_fast",
    "resume",
    "sleeping",
)
NEEDS_RUNS_API = {
    "taskbus_signals",
    "taskbus_signals_suspended",
    "resume",
    "sleeping",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer steps and signals, no memory control (~1.5 min)"
    )
    parser.add_argument("--only", help=f"comma-separated phases of {','.join(PHASES)}")
    parser.add_argument("--steps", type=int, help="steps in the timed run")
    parser.add_argument("--signals", type=int, help="signals sent")
    parser.add_argument("--resume", type=int, help="runs suspended and resumed (1,000)")
    parser.add_argument("--sleeping", type=int, help="runs left sleeping (10,000)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = replace(
        plan,
        steps=args.steps or plan.steps,
        signals=args.signals or plan.signals,
        resume=args.resume or plan.resume,
        sleeping=args.sleeping or plan.sleeping,
    )
    phases = args.only.split(",") if args.only else list(PHASES)
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
    mode = "quick" if args.quick else "full"
    dbos_version = ensure_dbos()
    missing = missing_apis()
    begun = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    runners = {
        "taskbus_steps": lambda: median_steps("taskbus_steps", plan),
        "dbos_steps": lambda: median_steps("dbos_steps", plan),
        "resume": lambda: run_resume(plan),
        "sleeping": lambda: run_sleeping(plan),
    }
    for phase in phases:
        if phase in NEEDS_RUNS_API and missing:
            results[phase] = {"skipped": f"taskbus lacks {', '.join(missing)}"}
            print(f"[{time.monotonic() - begun:6.1f} s] {phase}: skipped", flush=True)
            continue
        print(f"[{time.monotonic() - begun:6.1f} s] {phase} ...", flush=True)
        try:
            runner = runners.get(phase)
            results[phase] = runner() if runner else in_fresh_process(phase, plan)
        except Exception as exc:
            results[phase] = {"error": f"{phase}: {exc!r}"}
        if "error" in results[phase]:
            print(f"  failed: {results[phase]['error']}", file=sys.stderr, flush=True)

    def get(phase: str, key: str) -> float | None:
        return _value(results.get(phase), key)

    tb_steps, db_steps = get("taskbus_steps", "steps_s"), get("dbos_steps", "steps_s")
    sig = {
        side: (get(phase, "p50_ms"), get(phase, "p99_ms"))
        for side, phase in (
            ("taskbus", "taskbus_signals"),
            ("dbos", "dbos_signals"),
            ("dbos_fastpoll", "dbos_signals_fast"),
        )
    }
    woken = (get("taskbus_signals_suspended", "p50_ms"), get("taskbus_signals_suspended", "p99_ms"))
    resume_s = get("resume", "resume_s")
    sleeping = results.get("sleeping") or {}
    sleeping_mb = _value(sleeping, "rss_growth_mb")
    control_mb = _value(sleeping.get("control"), "rss_growth_mb")
    restarted_mb = _value(sleeping, "restarted_rss_growth_mb")
    rows = [
        [f"steps/s, one run of {plan.steps:,} empty steps", _cell(tb_steps), _cell(db_steps)],
        ["signal latency p50 (ms), DBOS default poll", _cell(sig["taskbus"][0], 2), ""],
        ["signal latency p99 (ms), DBOS default poll", _cell(sig["taskbus"][1], 2), ""],
        ["signal latency p50 (ms), DBOS 10 ms poll", _cell(sig["taskbus"][0], 2), ""],
        ["signal latency p99 (ms), DBOS 10 ms poll", _cell(sig["taskbus"][1], 2), ""],
    ]
    rows[1][2], rows[2][2] = _cell(sig["dbos"][0], 2), _cell(sig["dbos"][1], 2)
    rows[3][2], rows[4][2] = _cell(sig["dbos_fastpoll"][0], 2), _cell(sig["dbos_fastpoll"][1], 2)
    ratios = [
        _ratio(tb_steps, db_steps),
        _ratio(sig["taskbus"][0], sig["dbos"][0]),
        _ratio(sig["taskbus"][1], sig["dbos"][1]),
        _ratio(sig["taskbus"][0], sig["dbos_fastpoll"][0]),
        _ratio(sig["taskbus"][1], sig["dbos_fastpoll"][1]),
    ]
    for row, ratio in zip(rows, ratios, strict=True):
        row.append("n/a" if ratio is None else f"{ratio:.3f}")
    rows.append(["signal to a suspended run (wakes it) p50 (ms)", _cell(woken[0], 2), "", ""])
    rows.append(["signal to a suspended run (wakes it) p99 (ms)", _cell(woken[1], 2), "", ""])
    rows.append(
        [f"resume {plan.resume:,} sleeping runs after a restart (s)", _cell(resume_s, 2), "", ""]
    )
    rows.append([f"RSS growth, {plan.sleeping:,} runs sleeping (MB)", _cell(sleeping_mb), "", ""])
    if "control" in sleeping:
        rows.append(
            [f"  control: {plan.sleeping:,} runs that finish (MB)", _cell(control_mb), "", ""]
        )
        rows.append(
            ["  restarted: RSS with them sleeping - finished (MB)", _cell(restarted_mb), "", ""]
        )
    rows.append(
        [
            "  executor slots in use while they sleep",
            _cell(_value(sleeping, "executor_slots_in_use"), 0),
            "",
            "",
        ]
    )
    print()
    print_aligned(["measure", "taskbus", "DBOS", "taskbus / DBOS"], rows)
    seconds = round(time.monotonic() - begun, 1)
    print(
        f"\n{mode} mode; taskbus: concurrency 64, CPU admission off; DBOS {dbos_version} on "
        f"SQLite; {seconds} s, {os.cpu_count()} cpus"
    )
    if missing:
        print(f"not measured: taskbus lacks {', '.join(missing)}")
    for phase, result in results.items():
        print(f"  {phase}: {json.dumps(result, default=str)}")

    summary: dict[str, Any] = {
        "benchmark": "taskbus.runs",
        "mode": mode,
        "plan": asdict(plan),
        "taskbus_steps_s": tb_steps,
        "dbos_steps_s": db_steps,
        "ratio_steps_taskbus_vs_dbos": ratios[0],
        "taskbus_signal_p50_ms": sig["taskbus"][0],
        "taskbus_signal_p99_ms": sig["taskbus"][1],
        "dbos_signal_p50_ms": sig["dbos"][0],
        "dbos_signal_p99_ms": sig["dbos"][1],
        "ratio_signal_p50_taskbus_vs_dbos": ratios[1],
        "ratio_signal_p99_taskbus_vs_dbos": ratios[2],
        "dbos_fastpoll_signal_p50_ms": sig["dbos_fastpoll"][0],
        "dbos_fastpoll_signal_p99_ms": sig["dbos_fastpoll"][1],
        "ratio_signal_p50_taskbus_vs_dbos_fastpoll": ratios[3],
        "ratio_signal_p99_taskbus_vs_dbos_fastpoll": ratios[4],
        "taskbus_woken_signal_p50_ms": woken[0],
        "taskbus_woken_signal_p99_ms": woken[1],
        "taskbus_resume_1k_s": resume_s,
        "resume_runs": plan.resume,
        "taskbus_sleeping_10k_mb": sleeping_mb,
        "sleeping_runs": plan.sleeping,
        "taskbus_sleeping_executor_slots_in_use": sleeping.get("executor_slots_in_use"),
        "taskbus_finished_10k_control_mb": control_mb,
        "taskbus_sleeping_10k_restarted_mb": restarted_mb,
        "not_measured": {p: r["skipped"] for p, r in results.items() if "skipped" in r},
        "versions": {"dbos": dbos_version},
        "git": _git_state(),
        "cpus": os.cpu_count(),
        "seconds": seconds,
        "runs": results,
    }
    print(json.dumps(summary, default=str, separators=(",", ":")))
    return 1 if any("error" in r for r in results.values()) else 0


def _git_state() -> str:
    from benchmarks.peers import _git_state as state

    return state()


if __name__ == "__main__":
    sys.exit(main())
