"""``taskbus run ...``: one run of a task (an execution) with its steps and what it logged
(``run show``), the durable runs (``run list``), a run with the child runs it spawned (``run
tree``), what a run answers (``run query``), and what changes a run: ``run update``, ``run
signal``, ``run cancel``, ``run pause``, ``run resume``, ``run retry``. All go through the
scheduler (``scheduler.run.*``), which checks the run's task is the asker's."""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from config.errors import TaskbusError
from taskbus.cli import format as fmt
from taskbus.cli._remote import Handler, call, print_json
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


# ------------------------------------------------------------------ durable runs

RUN_HEADERS = ["RUN", "STATE", "WAKE", "WAITING", "ATTEMPT", "SIGNALS", "UPDATED", "REASON"]


def list_runs(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        if args.limit < 1:
            raise TaskbusError(f"--limit {args.limit}: expected 1 or more")
        found = await client.runs(args.task_id, args.state, limit=args.limit)
        if args.json:
            print_json(found)
            return 0
        if not found:
            print("no runs" + _filters(args))
            return 0
        now = datetime.now(UTC)
        print(fmt.table(RUN_HEADERS, [run_row(run, now) for run in found]))
        return 0

    return call(args, work)


def _filters(args: argparse.Namespace) -> str:
    said = [
        f"of {args.task_id}" if args.task_id else "",
        f"in state {args.state}" if args.state else "",
    ]
    return "".join(f" {part}" for part in said if part)


def run_row(run: dict[str, Any], now: datetime) -> list[str]:
    """One durable run in ``run list``: its key, state, when it wakes, what it waits for..."""
    return [
        run["run_key"],
        run_state(run),
        fmt.relative(run.get("wake_at"), now),
        run.get("waiting") or "-",
        str(run["attempt"]),
        str(run.get("signals", 0)),
        fmt.relative(run["updated_at"], now),
        fmt.clip(run.get("reason"), 40),
    ]


def run_state(run: dict[str, Any]) -> str:
    """A durable run's state, ``+paused`` when it is held: ``sleeping+paused``."""
    return f"{run['state']}+paused" if run.get("paused") else str(run["state"])


def read_payload(text: str | None) -> Any:
    """``--payload``: JSON text as the value it says; None when not given."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except RecursionError:
        raise TaskbusError("--payload: the JSON value nests too deeply") from None
    except ValueError as exc:
        raise TaskbusError(f"--payload: not JSON ({exc}); quote text as JSON: '\"yes\"'") from None


def signal(args: argparse.Namespace) -> int:
    payload = read_payload(args.payload)  # a mistake here connects to nothing

    async def work(client: TaskbusClient) -> int:
        reply = await client.signal(args.run, args.name, payload)
        if args.json:
            print_json(reply)
            return 0
        run = reply["run"]
        print(f"sent {args.name} to {run['run_key']} as signal {reply['seq']}: {describe(run)}")
        return 0

    return call(args, work)


def describe(run: dict[str, Any]) -> str:
    """The run's state in words: ``waiting for approve``, ``sleeping until 2024-05-01 09:00:00``,
    ``paused``..."""
    state = str(run["state"])
    if state == "waiting" and run.get("waiting"):
        state = f"waiting for {run['waiting']}"
    elif state == "sleeping" and run.get("wake_at"):
        state = f"sleeping until {fmt.local(run['wake_at'])}"
    return f"{state}, paused" if run.get("paused") else state


def _control(
    act: Callable[[TaskbusClient, argparse.Namespace], Awaitable[dict[str, Any]]], done: str
) -> Handler:
    """The command of ``run <verb> RUN`` that ``act``s on the run, then prints ``<done> <run key>
    (<its state>)``, or the run as JSON."""

    def handler(args: argparse.Namespace) -> int:
        async def work(client: TaskbusClient) -> int:
            run = await act(client, args)
            if args.json:
                print_json(run)
                return 0
            print(f"{done} {run['run_key']}: {describe(run)}")
            return 0

        return call(args, work)

    return handler


cancel = _control(lambda client, args: client.cancel_run(args.run, args.reason), "cancelled")
pause = _control(lambda client, args: client.pause_run(args.run), "paused")
resume = _control(lambda client, args: client.resume_run(args.run), "resumed")


def retry(args: argparse.Namespace) -> int:
    """``run retry RUN [--from-step NAME]``: prints ``retrying <run key> as <execution id>``
    and the steps that run again, or the reply as JSON."""

    async def work(client: TaskbusClient) -> int:
        reply = await client.retry_run(args.run, from_step=args.from_step)
        if args.json:
            print_json(reply)
            return 0
        deleted = reply["deleted_steps"]
        again = f"steps run again: {', '.join(deleted)}" if deleted else "no stored step runs again"
        print(f"retrying {reply['run']['run_key']} as {reply['execution_id']}; {again}")
        return 0

    return call(args, work)


# ------------------------------------------------------------------ child runs, queries


def tree(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        reply = await client.run_tree(args.run)
        if args.json:
            print_json(reply)
            return 0
        print("\n".join(tree_lines(reply)))
        return 0

    return call(args, work)


def tree_lines(node: dict[str, Any], depth: int = 0) -> list[str]:
    """A run and its children, one line each, indented two spaces a level: ``<run key>  <task
    id>  <state>`` (``+paused`` when held; ``, on parent cancel: abandon`` for a child its parent's
    cancel leaves running)."""
    run = node.get("run")
    if isinstance(run, dict):
        line = f"{run.get('run_key', '?')}  {run.get('task_id', '?')}  {run_state(run)}"
        if run.get("spawn_key"):
            line += f"  (spawned as {run['spawn_key']})"
        if run.get("on_parent_cancel") == "abandon":
            line += ", on parent cancel: abandon"
    else:
        line = str(run)
    lines = ["  " * depth + line]
    for child in node.get("children") or []:
        lines.extend(tree_lines(child, depth + 1))
    return lines


def query(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        reply = await client.query(args.run, args.name)
        if args.json:
            print_json(reply)
            return 0
        where = "live" if reply["live"] else "stored (the run is not live)"
        print(f"{args.name} of {args.run}, {where}:")
        print(fmt.as_json(reply["answer"], indent=2))
        return 0

    return call(args, work)


def update(args: argparse.Namespace) -> int:
    payload = read_payload(args.payload)  # a mistake here connects to nothing

    async def work(client: TaskbusClient) -> int:
        reply = await client.update_run(args.run, args.name, payload)
        if args.json:
            print_json(reply)
            return 0
        print(f"update {args.name} of {reply['run']} taken as signal {reply['seq']}, result:")
        print(fmt.as_json(reply["result"], indent=2))
        return 0

    return call(args, work)
