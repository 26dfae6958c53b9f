"""taskbus's timing engine against APScheduler 3 (AsyncIOScheduler, memory job store).

Run ``python benchmarks/scheduler.py [--quick]`` from the repository root. It prints a table and,
as its last line, one JSON object. APScheduler 3 is installed into the running environment if
it is missing (``pip install -e '.[bench]'`` does the same).

Each measurement runs in a fresh process, one after the other, so that memory figures are not
mixed up and the two schedulers never compete for the two cores:

- **firing latency**: N one-shot tasks due at distinct instants ``spacing_ms`` apart, starting a
  second after set-up; the latency of a fire is the wall time when the task's code starts minus
  its scheduled instant. taskbus: ``actors.fireloop.FireLoop`` on ``scheduler.TimingEngine``.
  APScheduler: ``AsyncIOScheduler`` with ``date`` triggers and a coroutine job.
- **many cron schedules**: the same list of cron expressions (a task each) added to a
  ``TimingEngine`` (``compile_schedule`` + ``put``) and to a paused ``BackgroundScheduler`` (memory
  job store, ``CronTrigger.from_crontab``): time to add them all, resident memory they add, and the
  time to find the next due task (``engine.next_due()`` / ``jobstore.get_next_run_time()``).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import multiprocessing
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

# ``python benchmarks/scheduler.py`` puts this directory first on sys.path, where this very file
# would shadow the ``scheduler`` package it measures. The repository root takes its place.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from benchmarks._measure import (  # noqa: E402
    aps3_fire_latencies,
    latency_summary,
    print_aligned,
)


@dataclass(frozen=True, slots=True)
class Plan:
    fires: int
    spacing_ms: float
    crons: int
    next_due_calls: int


QUICK = Plan(fires=400, spacing_ms=5.0, crons=20_000, next_due_calls=20_000)
FULL = Plan(fires=1_000, spacing_ms=5.0, crons=100_000, next_due_calls=100_000)


def cron_expressions(count: int) -> list[str]:
    """Varied, valid 5-field expressions (10,080 distinct ones, repeated)."""
    return [f"{i % 60} {(i // 60) % 24} * * {(i // 1440) % 7}" for i in range(count)]


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * 4096 / 1e6


# ------------------------------------------------------------------------------ taskbus


def taskbus_latency(plan: Plan) -> dict[str, Any]:
    from actors.fireloop import FireLoop
    from scheduler import MisfirePolicy, TaskPlan, compile_schedule

    async def main() -> list[float]:
        latencies: list[float] = []
        done = asyncio.Event()

        async def on_plans(plans: list[TaskPlan], now: datetime) -> None:
            started = datetime.now(UTC)
            for task_plan in plans:
                for run in task_plan.plan.runs:
                    latencies.append((started - run.instant).total_seconds() * 1e3)
            if len(latencies) >= plan.fires:
                done.set()

        loop = FireLoop(on_plans)
        loop.start()
        policy = MisfirePolicy(mode="run_once", grace_s=60.0)
        first = datetime.now(UTC) + timedelta(seconds=1)
        for index in range(plan.fires):
            instant = first + timedelta(milliseconds=index * plan.spacing_ms)
            loop.put(f"task-{index}", compile_schedule(f"at:{instant.isoformat()}"), policy)
        await asyncio.wait_for(done.wait(), 60)
        await loop.stop()
        return latencies

    return latency_summary(asyncio.run(main()))


def taskbus_crons(plan: Plan) -> dict[str, Any]:
    from scheduler import MisfirePolicy, TimingEngine, compile_schedule

    expressions = cron_expressions(plan.crons)
    policy = MisfirePolicy()
    now = datetime.now(UTC)
    before = rss_mb()
    engine = TimingEngine()
    started = time.perf_counter()
    for index, expression in enumerate(expressions):
        engine.put(f"task-{index}", compile_schedule(expression), policy, now)
    added_s = time.perf_counter() - started
    grown = rss_mb() - before
    return {"add_s": added_s, "rss_mb": grown, "next_due_us": _time_us(engine.next_due, plan)}


# ------------------------------------------------------------------------------ APScheduler 3


def aps_latency(plan: Plan) -> dict[str, Any]:
    return latency_summary(asyncio.run(aps3_fire_latencies(plan.fires, plan.spacing_ms, 60)))


def aps_crons(plan: Plan) -> dict[str, Any]:
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.triggers.cron import CronTrigger

    def noop() -> None:
        pass

    expressions = cron_expressions(plan.crons)
    before = rss_mb()
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start(paused=True)  # jobs get their next run time and go into the store
    started = time.perf_counter()
    for index, expression in enumerate(expressions):
        scheduler.add_job(
            noop, CronTrigger.from_crontab(expression, timezone=UTC), id=f"task-{index}"
        )
    added_s = time.perf_counter() - started
    grown = rss_mb() - before
    store = scheduler._jobstores["default"]  # the memory job store: what the scheduler asks
    next_due_us = _time_us(store.get_next_run_time, plan)
    scheduler.shutdown(wait=False)
    return {"add_s": added_s, "rss_mb": grown, "next_due_us": next_due_us}


# ------------------------------------------------------------------------------ plumbing


def _time_us(call: Callable[[], object], plan: Plan) -> float:
    started = time.perf_counter()
    for _ in range(plan.next_due_calls):
        call()
    return (time.perf_counter() - started) / plan.next_due_calls * 1e6


def _child(target: str, plan: Plan, queue: Any) -> None:
    queue.put(globals()[target](plan))


def in_fresh_process(target: str, plan: Plan) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(target, plan, queue))
    process.start()
    try:
        result: dict[str, Any] = queue.get(timeout=300)
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()
    return result


def ensure_apscheduler() -> str:
    if importlib.util.find_spec("apscheduler") is None:
        print("installing apscheduler<4 into this environment (the 'bench' extra)", flush=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "apscheduler>=3.10,<4"], check=True
        )
    return version("apscheduler")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer fires (under 30 s)")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    aps_version = ensure_apscheduler()
    started = time.monotonic()
    ours = in_fresh_process("taskbus_latency", plan)
    theirs = in_fresh_process("aps_latency", plan)
    our_crons = in_fresh_process("taskbus_crons", plan)
    their_crons = in_fresh_process("aps_crons", plan)
    rows = [
        ("firing latency p50 (ms)", ours["p50_ms"], theirs["p50_ms"]),
        ("firing latency p99 (ms)", ours["p99_ms"], theirs["p99_ms"]),
        ("firing latency max (ms)", ours["max_ms"], theirs["max_ms"]),
        (f"add {plan.crons:,} cron tasks (s)", our_crons["add_s"], their_crons["add_s"]),
        (f"memory for {plan.crons:,} tasks (MB)", our_crons["rss_mb"], their_crons["rss_mb"]),
        ("find next due (us)", our_crons["next_due_us"], their_crons["next_due_us"]),
    ]
    print_aligned(
        ("measurement", "taskbus", f"APScheduler {aps_version}", "taskbus / APScheduler"),
        [(name, f"{a:,.3f}", f"{b:,.3f}", f"{a / b:.2f}" if b else "n/a") for name, a, b in rows],
    )
    print(
        f"\n{plan.fires} fires {plan.spacing_ms} ms apart; {'quick' if args.quick else 'full'} "
        f"mode, {time.monotonic() - started:.1f} s"
    )
    print(
        json.dumps(
            {
                "benchmark": "taskbus.scheduler",
                "mode": "quick" if args.quick else "full",
                "apscheduler": aps_version,
                "fire_latency_p50_ms": round(ours["p50_ms"], 3),
                "fire_latency_p99_ms": round(ours["p99_ms"], 3),
                "fire_latency_max_ms": round(ours["max_ms"], 3),
                "aps_fire_latency_p50_ms": round(theirs["p50_ms"], 3),
                "aps_fire_latency_p99_ms": round(theirs["p99_ms"], 3),
                "aps_fire_latency_max_ms": round(theirs["max_ms"], 3),
                "add_100k_s": round(our_crons["add_s"] * 100_000 / plan.crons, 3),
                "aps_add_100k_s": round(their_crons["add_s"] * 100_000 / plan.crons, 3),
                "rss_100k_mb": round(our_crons["rss_mb"] * 100_000 / plan.crons, 1),
                "aps_rss_100k_mb": round(their_crons["rss_mb"] * 100_000 / plan.crons, 1),
                "next_due_us": round(our_crons["next_due_us"], 3),
                "aps_next_due_us": round(their_crons["next_due_us"], 3),
                "fires": plan.fires,
                "crons": plan.crons,
            }
        )
    )


if __name__ == "__main__":
    main()
