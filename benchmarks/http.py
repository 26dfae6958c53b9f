"""The REST API beside the bus client: requests per second and p50/p99 latency of the same two
operations over HTTP and over the bus.

Run ``python benchmarks/http.py [--quick]`` from the repository root. It prints a table and, as
its last line, one JSON object.

A real ``taskbus up --http`` child process (broker, encrypted store, scheduler, executors, and
uvicorn in the same event loop) in a fresh data directory, holding 100 ``user.*`` tasks (105
with the built-in ones). This process asks it as the admin ``cli``, over HTTP with a bearer
token (httpx, one keep-alive connection per request in flight) and over the bus with
``TaskbusClient`` (tcp+CURVE on loopback), side by side:

- ``GET /tasks`` / ``client.tasks()``: every task (two pages of the bus's ``scheduler.task.list``
  either way);
- ``POST /tasks/{id}/trigger`` / ``client.start(id)``: a run now, of the 100 tasks in turn (each
  ``overlap = allow_all``, a task that only publishes an event).

- **latency**: one request at a time; p50 and p99 of the time to the answer.
- **throughput**: ``--concurrency`` requests in flight; answers per second from the first request
  to the last answer.

The HTTP figure includes what the bus figure does (the server asks the bus for each request) plus
HTTP parsing, authentication, validation and JSON: the difference is the HTTP layer's cost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

import httpx  # noqa: E402

from benchmarks._children import await_line, free_port, stop  # noqa: E402
from benchmarks._measure import BenchError, latency_summary, print_aligned  # noqa: E402
from config import load_settings  # noqa: E402
from taskbus.client import TaskbusClient  # noqa: E402
from taskbus.http.tokens import TokenBook  # noqa: E402

QUICK = {"latency_requests": 200, "throughput_requests": 1_000}
FULL = {"latency_requests": 1_000, "throughput_requests": 5_000}
TASKS = 100
CONCURRENCY = 8
READY_S = 60.0
STOP_S = 60.0  # taskbus up --http to stop after SIGTERM
REQUEST_TIMEOUT_S = 30.0

Call = Callable[[int], Awaitable[Any]]


def _start(home: Path) -> tuple[subprocess.Popen[str], dict[str, str], str]:
    """``taskbus up --http`` in ``home``; its environment and the API's URL once it serves."""
    http_port = free_port()
    env = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_LOG_LEVEL": "warning",
        # Runs start however busy the machine is: the benchmark itself loads both cores.
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
        "TASKBUS_RESOURCES__MAX_MEMORY_PERCENT": "100",
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "taskbus", "up", "--http", f"127.0.0.1:{http_port}"],
        env=env,
        cwd=_HERE.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    await_line(child, "http API on", READY_S, "taskbus up --http did not serve")
    return child, env, f"http://127.0.0.1:{http_port}"


async def _latencies(call: Call, count: int) -> list[float]:
    for warm in range(min(20, count)):
        await call(warm)
    found = []
    for n in range(count):
        started = time.perf_counter()
        await call(n)
        found.append((time.perf_counter() - started) * 1e3)
    return found


async def _rate(call: Call, count: int, concurrency: int) -> float:
    """Answers per second with ``concurrency`` calls in flight."""
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < count:
            index, next_index = next_index, next_index + 1
            await call(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)


async def _measure(
    url: str, env: dict[str, str], token: str, plan: dict[str, int], concurrency: int
) -> dict[str, Any]:
    settings = load_settings(environ=env)
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with (
        TaskbusClient.connect(settings, responder_wait_s=READY_S) as bus,
        httpx.AsyncClient(
            base_url=url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_S
        ) as http,
    ):
        ids = [f"user.bench_{n:03d}" for n in range(TASKS)]
        await bus.create_many(
            {
                "task_id": task_id,
                "task_class": "tasks.reminders:Reminder",
                "schedule": "0 0 1 1 *",
                "run_policy": {"overlap": "allow_all", "allow_overlap": True},
            }
            for task_id in ids
        )

        async def http_list(_: int) -> None:
            reply = await http.get("/tasks")
            if reply.status_code != 200 or len(reply.json()["tasks"]) < TASKS:
                raise BenchError(f"GET /tasks: {reply.status_code} {reply.text[:200]}")

        async def bus_list(_: int) -> None:
            if len(await bus.tasks()) < TASKS:
                raise BenchError("client.tasks() lost tasks")

        async def http_trigger(n: int) -> None:
            reply = await http.post(f"/tasks/{ids[n % TASKS]}/trigger")
            if reply.status_code != 202:
                raise BenchError(f"POST trigger: {reply.status_code} {reply.text[:200]}")

        async def bus_trigger(n: int) -> None:
            await bus.start(ids[n % TASKS])

        measured: dict[str, Any] = {}
        for name, call in (
            ("http_list", http_list),
            ("bus_list", bus_list),
            ("http_trigger", http_trigger),
            ("bus_trigger", bus_trigger),
        ):
            latency = latency_summary(await _latencies(call, plan["latency_requests"]))
            measured[f"{name}_p50_ms"] = latency["p50_ms"]
            measured[f"{name}_p99_ms"] = latency["p99_ms"]
            rate = await _rate(call, plan["throughput_requests"], concurrency)
            measured[f"{name}_req_s"] = round(rate)
        return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (< 1 min)")
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY, help="requests in flight (default 8)"
    )
    args = parser.parse_args(argv)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="taskbus-bench-http-") as directory:
        home = Path(directory) / "home"
        child = None
        try:
            child, env, url = _start(home)
            token = TokenBook(home / "keys").issue("cli").token
            measured = asyncio.run(_measure(url, env, token, plan, args.concurrency))
        except (BenchError, TimeoutError, OSError, httpx.HTTPError) as exc:
            print(f"benchmark failed: {exc!r}", file=sys.stderr)
            print(json.dumps({"benchmark": "taskbus.http", "mode": mode, "error": repr(exc)}))
            return 1
        finally:
            if child is not None:
                stop(child, grace_s=STOP_S)
    summary = {
        "benchmark": "taskbus.http",
        "mode": mode,
        "cpus": os.cpu_count(),
        "tasks": TASKS,
        "concurrency": args.concurrency,
        **plan,
        **measured,
        "seconds": round(time.monotonic() - begun, 1),
    }
    rows = []
    for operation, http_name, bus_name in (
        ("list 100 tasks", "GET /tasks", "client.tasks()"),
        ("trigger a task", "POST /tasks/{id}/trigger", "client.start(id)"),
    ):
        key = "list" if operation.startswith("list") else "trigger"
        for path, name in (("http", http_name), ("bus", bus_name)):
            rows.append(
                [
                    operation if path == "http" else "",
                    name,
                    f"{measured[f'{path}_{key}_req_s']:,}",
                    f"{measured[f'{path}_{key}_p50_ms']} ms",
                    f"{measured[f'{path}_{key}_p99_ms']} ms",
                ]
            )
    print_aligned(["operation", "over", "req/s", "p50", "p99"], rows)
    print(
        f"\n{mode} mode, {summary['seconds']} s, {summary['cpus']} cpus; latency: one request "
        f"at a time ({plan['latency_requests']}); req/s: {args.concurrency} in flight "
        f"({plan['throughput_requests']})"
    )
    print(json.dumps(summary, separators=(",", ":"), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
