"""The CLI's commands that talk to a running taskbus: ``task ...``, ``stats``, ``health``,
``watch``, ``store ...``. Each connects with the client API (actors.client) as ``--identity``."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from actors import cli_format as fmt
from actors.client import TaskbusClient
from actors.runner import stop_signals
from config.errors import TaskbusError

# Exit codes besides 0 (success), 1 (an error, one line on stderr), 2 (bad usage), 3 and 5
# (actors.cli); every one is in docs/operations.md.
EXIT_INTEGRITY = 4
EXIT_DEGRADED = 6
EXIT_CRITICAL = 7

Work = Callable[[TaskbusClient], Awaitable[int]]
Commands = Any  # argparse's private _SubParsersAction


def _client_options() -> argparse.ArgumentParser:
    """The options of every command that connects to a running taskbus."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--connect",
        default=None,
        metavar="ENDPOINT",
        help="the broker's tcp:// or ipc:// endpoint (default: the first of bus.endpoints)",
    )
    options.add_argument(
        "--identity",
        default="cli",
        help="connect as this identity; its keypair must be in the keys directory (default cli)",
    )
    options.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="how long to wait for the system to answer (default 5)",
    )
    return options


_CLIENT = _client_options()


def add_commands(commands: Commands) -> None:
    _add_task_commands(commands)
    stats = commands.add_parser(
        "stats", parents=[_CLIENT], help="the scheduler's counters and the run statistics"
    )
    _json_flag(stats)
    stats.set_defaults(func=_stats)
    health = commands.add_parser(
        "health",
        parents=[_CLIENT],
        help="every actor's health; exit 0 healthy, 6 degraded, 7 critical",
    )
    _json_flag(health)
    health.set_defaults(func=_health)
    watch = commands.add_parser(
        "watch",
        parents=[_CLIENT],
        help="print status and health events as they happen, until Ctrl-C",
    )
    watch.add_argument(
        "--topic",
        action="append",
        default=None,
        metavar="PREFIX",
        help="a topic prefix to follow, repeatable (default: task status, dead letters, "
        "scheduler errors and health)",
    )
    watch.add_argument("--count", type=int, default=None, help="stop after this many events")
    _json_flag(watch)
    watch.set_defaults(func=_watch)
    _add_store_commands(commands)


def _add_task_commands(commands: Commands) -> None:
    task = commands.add_parser("task", help="list, show, create and change tasks")
    verbs = task.add_subparsers(dest="task_command", required=True)

    listing = verbs.add_parser(
        "list", parents=[_CLIENT], help="every task with its last and next run"
    )
    _json_flag(listing)
    listing.set_defaults(func=_list)

    show = verbs.add_parser(
        "show", parents=[_CLIENT], help="one task: definition, policies, run counts"
    )
    show.add_argument("task_id")
    _json_flag(show)
    show.set_defaults(func=_show)

    create = verbs.add_parser("create", parents=[_CLIENT], help="a new user.* task")
    create.add_argument("task_id", help="user.<name>")
    create.add_argument(
        "--class",
        dest="task_class",
        required=True,
        help="module:Class, e.g. tasks.reminders:Reminder",
    )
    create.add_argument("--schedule", required=True, help="cron, 'every 5m', 'at:<ISO instant>'...")
    _definition_flags(create)
    create.add_argument("--disabled", action="store_true", help="store it without scheduling it")
    create.set_defaults(func=_create)

    update = verbs.add_parser(
        "update", parents=[_CLIENT], help="change a task's schedule, zone, options, policies"
    )
    update.add_argument("task_id")
    update.add_argument("--class", dest="task_class", default=None, help="user tasks only")
    update.add_argument("--schedule", default=None)
    _definition_flags(update)
    update.add_argument(
        "--replace-options",
        action="store_true",
        help="the --option values replace the stored options instead of being merged in",
    )
    update.set_defaults(func=_update)

    for verb, helptext, func in (
        ("delete", "delete a user.* task (its history stays until retention)", _delete),
        ("enable", "schedule the task again", _enable),
        ("disable", "stop scheduling the task (trigger still runs it)", _disable),
        ("trigger", "run the task now, outside its schedule", _trigger),
        ("reset", "forget the last run: nothing counts as missed, next fire after now", _reset),
    ):
        command = verbs.add_parser(verb, parents=[_CLIENT], help=helptext)
        command.add_argument("task_id")
        command.set_defaults(func=func)

    logs = verbs.add_parser("logs", parents=[_CLIENT], help="the task's executions, latest first")
    logs.add_argument("task_id")
    logs.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    _json_flag(logs)
    logs.set_defaults(func=_logs)

    missed = verbs.add_parser(
        "missed", parents=[_CLIENT], help="the task's fires that did not run, with their reasons"
    )
    missed.add_argument("task_id")
    missed.add_argument("--limit", type=int, default=20, help="how many (default 20)")
    _json_flag(missed)
    missed.set_defaults(func=_missed)


def _add_store_commands(commands: Commands) -> None:
    store = commands.add_parser("store", help="maintain the encrypted store of a running taskbus")
    verbs = store.add_subparsers(dest="store_command", required=True)
    check = verbs.add_parser(
        "check", parents=[_CLIENT], help="run PRAGMA integrity_check on the database"
    )
    check.set_defaults(func=_store_check)
    rekey = verbs.add_parser(
        "rekey",
        parents=[_CLIENT],
        help="rotate the database key (a backup with the old key is kept beside it)",
    )
    rekey.set_defaults(func=_store_rekey)


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def _definition_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tz", dest="timezone", default=None, help="IANA zone, e.g. Europe/Berlin")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a task option, repeatable; VALUE is read as JSON if it parses (7, true, "
        '"text", [1,2]), else as text',
    )
    parser.add_argument(
        "--misfire",
        choices=["skip", "run_once", "catch_up"],
        default=None,
        help="what to do with fires missed while taskbus was down",
    )
    parser.add_argument(
        "--retries", type=int, default=None, help="retries after a failed run (attempts - 1)"
    )
    parser.add_argument(
        "--run-timeout", type=float, default=None, metavar="SECONDS", help="a run's time limit"
    )


# ------------------------------------------------------------------ plumbing


def _call(args: argparse.Namespace, work: Work) -> int:
    async def run() -> int:
        async with TaskbusClient.connect(
            args.settings,
            identity=args.identity,
            endpoint=args.connect,
            timeout_s=args.timeout,
            responder_wait_s=args.timeout,
        ) as client:
            return await work(client)

    return asyncio.run(run())


def _print_json(value: Any) -> None:
    print(fmt.as_json(value, indent=2))


def _options(pairs: list[str]) -> dict[str, Any]:
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
    policies: dict[str, Any] = {}
    if args.misfire is not None:
        policies["misfire_policy"] = {"mode": args.misfire}
    if args.retries is not None:
        if args.retries < 0:
            raise TaskbusError(f"--retries {args.retries}: expected 0 or more")
        policies["retry_policy"] = {"max_attempts": args.retries + 1}
    if args.run_timeout is not None:
        policies["run_policy"] = {"timeout_s": args.run_timeout}
    return policies


# ------------------------------------------------------------------ tasks


def _list(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        tasks = await client.tasks(with_status=True)
        if args.json:
            _print_json(tasks)
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
                "yes" if task["enabled"] else "no",
                fmt.relative(task["last_run"], now),
                fmt.relative(task["next_fire"], now) if task["enabled"] else "-",
                str(task["status"]["runs"]),
                fmt.clip(task["status"]["last_error"], 40),
            ]
            for task in tasks
        ]
        headers = ["ID", "SCHEDULE", "TIMEZONE", "ENABLED", "LAST RUN", "NEXT RUN", "RUNS"]
        print(fmt.table([*headers, "LAST ERROR"], rows))
        return 0

    return _call(args, work)


def _show(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        task = await client.get(args.task_id)
        status = await client.status(args.task_id)
        if args.json:
            _print_json({"task": task, **status})
            return 0
        now = datetime.now(UTC)
        runs = status["status"]
        lines = [
            ("task", task["task_id"]),
            ("class", task["task_class"]),
            ("schedule", f"{task['schedule']}  ({task['timezone']})"),
            *([("note", status["schedule_note"])] if status.get("schedule_note") else []),
            ("enabled", "yes" if task["enabled"] else "no"),
            ("next run", _instant(status["next_fire"], now)),
            ("last run", _instant(task["last_run"], now)),
            (
                "runs",
                f"{runs['runs']} ({runs['succeeded']} succeeded, {runs['failed']} failed, "
                f"{runs['running']} running)",
            ),
            ("last error", _last_error(runs, now)),
            ("options", fmt.as_json(task["config"])),
        ]
        for name in ("misfire_policy", "retry_policy", "run_policy"):
            if task.get(name):
                lines.append((name.replace("_", " "), fmt.as_json(task[name])))
        for retry in status["pending_retries"]:
            lines.append(
                ("retry", f"attempt {retry['attempt']} {_instant(retry['scheduled_at'], now)}")
            )
        lines += [
            ("owner", task["owner"]),
            ("version", f"{task['version']}, updated {_instant(task['updated_at'], now)}"),
        ]
        width = max(len(name) for name, _ in lines)
        for name, value in lines:
            print(f"{name.ljust(width)}  {value}")
        return 0

    return _call(args, work)


async def _next_run(client: TaskbusClient, task_id: str) -> str:
    """``in 5m`` (or ``-``): when the scheduler fires the task next."""
    return fmt.relative((await client.status(task_id))["next_fire"], _now())


def _instant(value: str | None, now: datetime) -> str:
    if value is None:
        return "-"
    local = datetime.fromisoformat(value).astimezone()
    return f"{local:%Y-%m-%d %H:%M:%S %Z} ({fmt.relative(value, now)})"


def _last_error(runs: dict[str, Any], now: datetime) -> str:
    if not runs["last_error"]:
        return "-"
    return f"{fmt.clip(runs['last_error'], 100)}  at {_instant(runs['last_error_at'], now)}"


def _create(args: argparse.Namespace) -> int:
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
        if not task["enabled"]:
            print(f"created {task['task_id']} (disabled)")
            return 0
        print(f"created {task['task_id']}: next run {await _next_run(client, task['task_id'])}")
        return 0

    return _call(args, work)


def _update(args: argparse.Namespace) -> int:
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
        task = await client.update(args.task_id, **changes)
        print(f"updated {task['task_id']} to version {task['version']}")
        return 0

    return _call(args, work)


def _delete(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        await client.delete(args.task_id)
        print(f"deleted {args.task_id}")
        return 0

    return _call(args, work)


def _enable(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        await client.enable(args.task_id)
        print(f"enabled {args.task_id}: next run {await _next_run(client, args.task_id)}")
        return 0

    return _call(args, work)


def _disable(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        await client.disable(args.task_id)
        print(f"disabled {args.task_id}")
        return 0

    return _call(args, work)


def _trigger(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        execution_id = await client.trigger(args.task_id)
        print(f"triggered {args.task_id}: execution {execution_id}")
        return 0

    return _call(args, work)


def _reset(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        await client.reset(args.task_id)
        print(f"reset {args.task_id}: next run {await _next_run(client, args.task_id)}")
        return 0

    return _call(args, work)


def _logs(args: argparse.Namespace) -> int:
    return _task_rows(
        args,
        lambda client: client.history(args.task_id, limit=args.limit),
        "has not run yet",
        ["STARTED", "SCHEDULED", "ATTEMPT", "STATE", "DURATION", "RESULT / ERROR"],
        lambda run: [
            _local(run["started_at"]),
            _local(run["scheduled_at"]),
            str(run["retry_count"] + 1),
            _state(run),
            fmt.seconds(run["duration_seconds"]),
            fmt.clip(run["error_message"] or _result(run["result"]), 60),
        ],
    )


def _missed(args: argparse.Namespace) -> int:
    return _task_rows(
        args,
        lambda client: client.missed(args.task_id, limit=args.limit),
        "has missed no fire",
        ["FIRST", "LAST", "FIRES", "REASON"],
        lambda missed: [
            _local(missed["first_at"]),
            _local(missed["last_at"]),
            str(missed["count"]),
            fmt.clip(missed["reason"], 60),
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
            _print_json(rows)
            return 0
        if not rows:
            await client.get(args.task_id)  # not_found for a task that never existed
            print(f"{args.task_id} {none}")
            return 0
        print(fmt.table(headers, [row(found) for found in rows]))
        return 0

    return _call(args, work)


def _local(value: str) -> str:
    return f"{datetime.fromisoformat(value).astimezone():%Y-%m-%d %H:%M:%S}"


def _state(run: dict[str, Any]) -> str:
    if run["success"] is None:
        return "running"
    return "succeeded" if run["success"] else "failed"


def _result(result: dict[str, Any] | None) -> str:
    return "" if not result else fmt.as_json(result)


def _now() -> datetime:
    return datetime.now(UTC)


# ------------------------------------------------------------------ the system


def _stats(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        stats = await client.stats()
        if args.json:
            _print_json(stats)
            return 0
        upcoming = stats["next_due"]
        runs = stats["runs"]
        print(f"leader           {stats['leader']} (lease token {stats['lease_token']})")
        print(f"tasks            {stats['tasks']} ({stats['scheduled']} scheduled)")
        if upcoming:
            when = fmt.relative(upcoming["at"], _now())
            print(f"next due         {upcoming['task_id']} {when}")
        print(f"pending retries  {stats['pending_retries']}")
        counters = ", ".join(f"{k} {v}" for k, v in sorted(stats["counters"].items())) or "-"
        print(f"since start      {counters}")
        print(f"runs stored      {_run_stats(runs)}")
        return 0

    return _call(args, work)


def _run_stats(runs: dict[str, Any]) -> str:
    parts = [f"{runs.get('runs', 0)} runs"]
    for key, label in (("succeeded", "succeeded"), ("failed", "failed")):
        if key in runs:
            parts.append(f"{runs[key]} {label}")
    for key, label in (("mean_s", "mean"), ("p95_s", "p95")):
        if runs.get(key) is not None:
            parts.append(f"{label} {fmt.seconds(runs[key])}")
    return ", ".join(parts)


def _health(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        report = await client.health()
        if args.json:
            _print_json(report)
        else:
            print(f"taskbus is {report['status']}")
            rows = [
                [
                    name,
                    actor["status"],
                    str(actor["state"]),
                    str(actor["restarts"]),
                    f"{actor['host']}:{actor['pid']}",
                    "; ".join(actor["reasons"]) or "-",
                ]
                for name, actor in sorted(report["actors"].items())
            ]
            print(fmt.table(["ACTOR", "HEALTH", "STATE", "RESTARTS", "PROCESS", "REASONS"], rows))
        return {"healthy": 0, "degraded": EXIT_DEGRADED}.get(report["status"], EXIT_CRITICAL)

    return _call(args, work)


def _watch(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        with stop_signals() as stop:
            events = await client.watch(*(args.topic or ()))
            print(f"watching {', '.join(events.prefixes)} (Ctrl-C to stop)", flush=True)
            seen = 0
            stopping = asyncio.ensure_future(stop.wait())
            try:
                while args.count is None or seen < args.count:
                    getting = asyncio.ensure_future(events.get())
                    await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not getting.done():
                        getting.cancel()
                        break
                    event = getting.result()
                    seen += 1
                    if args.json:
                        line = {"topic": event.topic, "sender": event.sender, **event.payload}
                        print(fmt.as_json(line), flush=True)
                    else:
                        print(
                            fmt.event_line(event.topic, event.sender, event.payload, _local_now()),
                            flush=True,
                        )
            finally:
                stopping.cancel()
        return 0

    return _call(args, work)


def _local_now() -> datetime:
    return datetime.now().astimezone()


# ------------------------------------------------------------------ the store


def _store_check(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        reply = await client.ask("store.maintenance.integrity_check")
        if reply["ok"]:
            print("store integrity: ok")
            return 0
        for problem in reply["problems"]:
            print(f"store integrity: {problem}")
        return EXIT_INTEGRITY

    return _call(args, work)


def _store_rekey(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        reply = await client.ask("store.maintenance.rekey")
        print(f"store rekeyed; backup with the old key: {reply['backup']}")
        if reply["backup_key_file"]:
            print(f"the old master key, which opens the backup: {reply['backup_key_file']}")
        return 0

    return _call(args, work)
