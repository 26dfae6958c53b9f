"""``taskbus task ...``: list, show, create and change the tasks of a running taskbus."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.errors import TaskbusError
from scheduler.policies import task_policies
from taskbus.cli import describe as describing
from taskbus.cli import format as fmt
from taskbus.cli import run as runs
from taskbus.cli._remote import Handler, call, print_json
from taskbus.client import Started, TaskbusClient

Act = Callable[[TaskbusClient, str], Awaitable[object]]


def list_tasks(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        tasks = await client.tasks(with_status=True)
        if args.json:
            print_json(tasks)
            return 0
        if not tasks:
            print("no tasks")
            return 0
        now = datetime.now(UTC)
        rows = [
            [
                task["task_id"],
                task["schedule"],
                task["timezone"],
                _enabled(task),
                fmt.relative(task["status"].get("last_run", task["last_run"]), now),
                fmt.relative(task["next_fire"], now) if task["enabled"] else "-",
                str(task["status"]["runs"]),
                fmt.clip(task["status"]["last_error"], 40),
            ]
            for task in tasks
        ]
        headers = ["ID", "SCHEDULE", "TIMEZONE", "ENABLED", "LAST RUN", "NEXT RUN", "RUNS"]
        print(fmt.table([*headers, "LAST ERROR"], rows))
        return 0

    return call(args, work)


def _enabled(task: dict[str, Any]) -> str:
    """``task list``'s ENABLED column: yes, no, or paused."""
    if task.get("paused"):
        return "paused"
    return "yes" if task["enabled"] else "no"


def show(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        task = await client.get(args.task_id)
        status = await client.status(args.task_id)
        described = await client.describe(args.task_id, count=args.next_count)
        if args.json:
            print_json({"task": task, **status, **describing.description_json(described)})
            return 0
        now = datetime.now(UTC)
        zone = _zone(task["timezone"])

        def when(value: str | None) -> str:
            return fmt.instant(value, now, zone)

        runs = status["status"]
        lines = [
            ("task", task["task_id"]),
            ("class", task["task_class"]),
            ("schedule", f"{task['schedule']}  ({task['timezone']})"),  # times below in it
            *([("note", status["schedule_note"])] if status.get("schedule_note") else []),
            *(("warning", warning) for warning in status.get("warnings", ())),
            ("enabled", "yes" if task["enabled"] else "no"),
            *describing.lines(described, now, zone),
            ("next run", when(status["next_fire"])),
            ("last run", when(runs.get("last_run", task["last_run"]))),
            (
                "runs",
                f"{runs['runs']} ({runs['succeeded']} succeeded, {runs['failed']} failed, "
                f"{runs['running']} running)",
            ),
            ("last error", _last_error(runs, when)),
            ("options", fmt.as_json(task["config"])),
            *_effective_policies(args, task),
        ]
        for retry in status["pending_retries"]:
            lines.append(("retry", f"attempt {retry['attempt']} {when(retry['scheduled_at'])}"))
        lines += [
            ("owner", task["owner"]),
            ("version", f"{task['version']}, updated {when(task['updated_at'])}"),
        ]
        width = max(len(name) for name, _ in lines)
        for name, value in lines:
            print(f"{name.ljust(width)}  {value}")
        return 0

    return call(args, work)


def _zone(name: str) -> tzinfo | None:
    """The task's zone (None, the local one, if this machine does not know it)."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _effective_policies(args: argparse.Namespace, task: dict[str, Any]) -> list[tuple[str, str]]:
    """The policies a run of the task follows: its own keys over the ``[scheduler]`` defaults
    (this CLI's settings, as the scheduler reads them from the same home); ``*`` marks a key the
    task sets itself."""
    try:
        effective = task_policies(
            args.settings.scheduler,
            misfire=task.get("misfire_policy"),
            retry=task.get("retry_policy"),
            run=task.get("run_policy"),
        )
    except TaskbusError as exc:
        return [("policies", f"cannot be read here: {exc}")]
    shown = []
    for name, policy in (
        ("misfire", effective.misfire),
        ("retry", effective.retry),
        ("run", effective.run),
    ):
        own = task.get(f"{name}_policy") or {}
        parts = []
        for key, value in dataclasses.asdict(policy).items():
            text = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
            parts.append(f"{key}={text}{'*' if key in own else ''}")
        shown.append((f"{name} policy", " ".join(parts)))
    return shown


def _last_error(runs: dict[str, Any], when: Callable[[str | None], str]) -> str:
    if not runs["last_error"]:
        return "-"
    return f"{fmt.clip(runs['last_error'], 100)}  at {when(runs['last_error_at'])}"


# ------------------------------------------------------------------ changes


def create(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        task = await client.create(
            args.task_id,
            args.task_class,
            args.schedule,
            timezone=args.timezone,
            config=_options(args.option),
            enabled=not args.disabled,
            **_policies(args),
        )
        _warn(task)
        if not task["enabled"]:
            print(f"created {task['task_id']} (disabled)")
            return 0
        print(f"created {task['task_id']}: next run {await _next_run(client, task['task_id'])}")
        return 0

    return call(args, work)


def update(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        changes: dict[str, Any] = _policies(args)
        for name in ("task_class", "schedule", "timezone"):
            if getattr(args, name) is not None:
                changes[name] = getattr(args, name)
        if args.option or args.replace_options:
            stored = await client.get(args.task_id)
            base = {} if args.replace_options else dict(stored["config"])
            changes["config"] = {**base, **_options(args.option)}
            changes["expected_version"] = stored["version"]
        if not changes:
            raise TaskbusError("nothing to change: give --schedule, --tz, --option ...")
        if "run_policy" in changes:  # the flags change their keys, the others stay
            stored_run = (await client.get(args.task_id)).get("run_policy") or {}
            changes["run_policy"] = {**stored_run, **changes["run_policy"]}
        task = await client.update(args.task_id, **changes)
        _warn(task)
        print(f"updated {task['task_id']} to version {task['version']}")
        return 0

    return call(args, work)


def _warn(task: dict[str, Any]) -> None:
    for warning in task.get("warnings", ()):  # what the scheduler could not check
        print(f"taskbus: warning: {warning}", file=sys.stderr)


def _options(pairs: list[str]) -> dict[str, Any]:
    """The ``--option KEY=VALUE`` flags: VALUE as JSON if it parses, else as text."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise TaskbusError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(text)
        except RecursionError:
            raise TaskbusError(f"--option {key}: the JSON value nests too deeply") from None
        except ValueError:
            options[key] = text
    return options


def _policies(args: argparse.Namespace) -> dict[str, Any]:
    """The policies that ``--misfire``, ``--retries`` and ``--run-timeout`` set."""
    policies: dict[str, Any] = {}
    if args.misfire is not None:
        policies["misfire_policy"] = {"mode": args.misfire}
    if args.retries is not None:
        if args.retries < 0:
            raise TaskbusError(f"--retries {args.retries}: expected 0 or more")
        policies["retry_policy"] = {"max_attempts": args.retries + 1}
    if args.run_timeout is not None:
        policies["run_policy"] = {"timeout_s": args.run_timeout}
    if args.overlap is not None:
        policies.setdefault("run_policy", {})["overlap"] = args.overlap
    if args.max_runs is not None:
        if args.max_runs < 1:
            raise TaskbusError(f"--max-runs {args.max_runs}: expected 1 or more")
        policies.setdefault("run_policy", {})["max_runs"] = args.max_runs
    if args.depends_on is not None or args.no_depends_on:
        policies.setdefault("run_policy", {})["depends_on"] = list(args.depends_on or ())
    if args.depends_wait is not None:
        policies.setdefault("run_policy", {})["depends_wait_s"] = args.depends_wait
    return policies


def _one_change(act: Act, done: str, *, then_next_run: bool = False) -> Handler:
    """The command of ``task <verb> TASK_ID`` that ``act``s on the task, then prints one line:
    ``<done> TASK_ID``, with the task's next run if ``then_next_run``."""

    def handler(args: argparse.Namespace) -> int:
        async def work(client: TaskbusClient) -> int:
            await act(client, args.task_id)
            line = f"{done} {args.task_id}"
            if then_next_run:
                line += f": next run {await _next_run(client, args.task_id)}"
            print(line)
            return 0

        return call(args, work)

    return handler


delete = _one_change(TaskbusClient.delete, "deleted")
enable = _one_change(TaskbusClient.enable, "enabled", then_next_run=True)
disable = _one_change(TaskbusClient.disable, "disabled")
reset = _one_change(TaskbusClient.reset, "reset", then_next_run=True)


def trigger(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        if args.key is None:
            execution_id = await client.trigger(args.task_id)
            print(f"triggered {args.task_id}: execution {execution_id}")
            return 0
        print(started_line(await client.start(args.task_id, key=args.key), args.key))
        return 0

    return call(args, work)


def started_line(started: Started, key: str) -> str:
    """What ``task trigger --key`` prints: the run the key started, now or before."""
    if started.duplicate:
        return (
            f"duplicate {started.task_id}: key {key!r} already started run {started.run} "
            f"(execution {started.execution_id}); nothing new started"
        )
    return f"triggered {started.task_id}: execution {started.execution_id}, run {started.run}"


async def _next_run(client: TaskbusClient, task_id: str) -> str:
    """``in 5m`` (or ``-``): when the scheduler fires the task next."""
    return fmt.relative((await client.status(task_id))["next_fire"], datetime.now(UTC))


# ------------------------------------------------------------------ history


LOG_HEADERS = [
    *("RUN", "TRIGGER", "SCHEDULED", "STARTED", "WAITED", "ATTEMPT", "STATE", "DURATION"),
    "RESULT / ERROR",
]


def logs(args: argparse.Namespace) -> int:
    if args.run is not None:
        return run_logs(args)
    return _task_rows(
        args,
        lambda client: client.history(args.task_id, limit=args.limit),
        "has not run yet",
        LOG_HEADERS,
        lambda run: [
            run["execution_id"],
            run.get("trigger") or "-",
            fmt.local(run["scheduled_at"]),
            _started(run),
            _waited(run),
            str(run["retry_count"] + 1),
            fmt.run_state(run),
            fmt.seconds(run["duration_seconds"]),
            fmt.clip(run["error_message"] or fmt.run_result(run["result"]), 60),
        ],
    )


def _started(run: dict[str, Any]) -> str:
    """When the task really began; a run stored before that was kept shows its dispatch."""
    if run.get("run_started_at"):
        return fmt.local(run["run_started_at"])
    return "-" if run["success"] is None else fmt.local(run["started_at"])


def _waited(run: dict[str, Any]) -> str:
    """From its dispatch to its real start: the wait to be admitted (behind another run...)."""
    if not run.get("run_started_at"):
        return "-"
    waited = datetime.fromisoformat(run["run_started_at"]) - datetime.fromisoformat(
        run["started_at"]
    )
    return fmt.seconds(max(0.0, waited.total_seconds()))


def run_logs(args: argparse.Namespace) -> int:
    """``task logs TASK_ID --run EXECUTION_ID``: one run, then the lines it logged (asked of the
    scheduler, which checks the run's task is the asker's; refused if it is another task's)."""

    async def work(client: TaskbusClient) -> int:
        run = (await client.run(args.run))["run"]
        if run["task_id"] != args.task_id:
            raise TaskbusError(
                f"run {args.run} is of task {run['task_id']!r}, not {args.task_id!r}"
            )
        if args.json:
            print_json(run)
            return 0
        runs.print_run(run)
        runs.print_logs(run)
        return 0

    return call(args, work)


def missed(args: argparse.Namespace) -> int:
    return _task_rows(
        args,
        lambda client: client.missed(args.task_id, limit=args.limit),
        "has missed no fire",
        ["FIRST", "LAST", "FIRES", "REASON"],
        lambda miss: [
            fmt.local(miss["first_at"]),
            fmt.local(miss["last_at"]),
            str(miss["count"]),
            fmt.clip(miss["reason"], 60),
        ],
    )


def _task_rows(
    args: argparse.Namespace,
    fetch: Callable[[TaskbusClient], Awaitable[list[dict[str, Any]]]],
    none: str,
    headers: list[str],
    row: Callable[[dict[str, Any]], list[str]],
) -> int:
    """A page of one task's rows (``task logs``, ``task missed``): JSON with ``--json``, else
    a table, or ``<task> <none>`` when there are none."""

    async def work(client: TaskbusClient) -> int:
        rows = await fetch(client)
        if args.json:
            print_json(rows)
            return 0
        if not rows:
            await client.get(args.task_id)  # not_found for a task that never existed
            print(f"{args.task_id} {none}")
            return 0
        print(fmt.table(headers, [row(found) for found in rows]))
        return 0

    return call(args, work)
