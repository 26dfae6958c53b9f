"""``taskbus run show``: one run of a task (an execution) with its steps and what it logged,
read through the scheduler (``scheduler.run.get``), which checks the run's task is the asker's."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from taskbus.cli import format as fmt
from taskbus.cli._remote import call, print_json
from taskbus.client import TaskbusClient

STEP_HEADERS = ["NAME", "STATUS", "ATTEMPTS", "STARTED", "TOOK", "SIZE"]


def show(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        reply = await client.run(args.execution_id)
        if args.json:
            print_json(reply)
            return 0
        print_run(reply["run"])
        steps = reply["steps"]
        print(f"\n{len(steps)} steps" if steps else "\nno steps")
        if steps:
            print(fmt.table(STEP_HEADERS, [_step_row(step) for step in steps]))
            failed = [step for step in steps if step["error"]]
            for step in failed:
                print(f"{step['name']}: {fmt.clip(step['error'], 100)}")
        print_logs(reply["run"])
        return 0

    return call(args, work)


def print_run(run: dict[str, Any]) -> None:
    """The run's fields, one per line: ``name  value``."""
    lines = [
        ("run", run["execution_id"]),
        ("task", run["task_id"]),
        ("trigger", run.get("trigger") or "-"),
        ("attempt", str(run["retry_count"] + 1)),
        ("scheduled", fmt.local(run["scheduled_at"])),
        ("dispatched", fmt.local(run["started_at"])),
        ("started", fmt.local(run["run_started_at"]) if run.get("run_started_at") else "-"),
        ("finished", fmt.local(run["completed_at"]) if run["completed_at"] else "-"),
        ("state", fmt.run_state(run)),
        ("duration", fmt.seconds(run["duration_seconds"])),
        ("result", fmt.clip(run["error_message"] or fmt.run_result(run["result"]), 100)),
    ]
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        print(f"{name.ljust(width)}  {value}")


def print_logs(run: dict[str, Any]) -> None:
    """How many lines the run logged, then each: ``HH:MM:SS.mmm LEVEL   message``."""
    logged = run.get("logs") or []
    print(f"\n{len(logged)} log lines" if logged else "\nnothing logged")
    for line in logged:
        at = datetime.fromisoformat(line["at"]).astimezone()
        print(f"{at:%H:%M:%S}.{at.microsecond // 1000:03d} {line['level']:<7} {line['message']}")


def _step_row(step: dict[str, Any]) -> list[str]:
    took = datetime.fromisoformat(step["finished_at"]) - datetime.fromisoformat(step["started_at"])
    return [
        step["name"],
        step["status"],
        str(step["attempts"]),
        fmt.local(step["started_at"]),
        fmt.seconds(max(0.0, took.total_seconds())),
        fmt.size(step["size"]),
    ]
