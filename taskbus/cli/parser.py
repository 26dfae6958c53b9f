"""The ``taskbus`` command's arguments: the global options, every command's own, and what the
global options make of the settings. Each command's ``func`` is its handler in the module of its
noun (up, keys, task, status, store).

The global options (``--home``, ``--config``, ``--log-level``) are accepted before or after the
command: every sub-command takes them too, with a suppressed default, so that one given after
the command overrides the top level's and one not given there leaves it alone."""

from __future__ import annotations

import argparse
from importlib import metadata
from pathlib import Path
from typing import Any

from config import Settings, load_settings
from scheduler.policies import OVERLAP_RULES
from store.records import RUN_STATES
from taskbus.cli import apply, backfill, keys, run, status, store, task, up
from taskbus.cli import describe as describing
from taskbus.cli._remote import Handler


class _Commands:
    """A parser's sub-commands, each made to take the global options too."""

    def __init__(self, action: Any) -> None:  # argparse's private _SubParsersAction
        self._action = action

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        kwargs["parents"] = [*kwargs.get("parents", ()), _GLOBALS]
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        parser: argparse.ArgumentParser = self._action.add_parser(name, **kwargs)
        return parser


Commands = _Commands


DESCRIPTION = """\
Run taskbus, and manage the tasks of a running one over its authenticated bus.

A mistake ends in one line on stderr and a non-zero exit code (docs/operations.md)."""

EXAMPLES = """\
examples:
  taskbus up                          run every actor here (scripts/up does this)
  taskbus task list                   every task with its last and next run
  taskbus task create user.reflect --class tasks.reminders:Reminder \\
      --schedule "0 23 * * *" --tz Europe/Berlin --option message="time to reflect"
  taskbus task logs user.reflect      its runs, latest first
  taskbus run show EXECUTION_ID       one run: its steps and what it logged
  taskbus run signal RUN approve      send a waiting run the signal it waits for
  taskbus watch --json                events as JSON lines, until Ctrl-C
  taskbus task list --home /srv/tb    global options go before or after the command
  taskbus <command> --help            a command's own options"""

TASK_EXAMPLES = """\
examples:
  taskbus task create user.reflect --class tasks.reminders:Reminder --schedule "every 10s"
  taskbus task update user.reflect --schedule "0 23 * * *" --tz Europe/Berlin
  taskbus task trigger user.reflect
  taskbus task trigger user.reflect --key 2024-05-01
  taskbus task backfill user.reflect --from 2026-05-01T00:00:00Z --to 2026-05-07T23:59:59Z
  taskbus task pause user.reflect --note "vendor API down"
  taskbus task unpause user.reflect
  taskbus task show user.reflect --next 10
  taskbus task logs user.reflect --limit 5
  taskbus task missed maintenance.log_cleanup"""


RUN_EXAMPLES = """\
examples:
  taskbus run show EXECUTION_ID
  taskbus run list --task user.approval --state waiting
  taskbus run signal user.approval@1714546800000000 approve --payload '{"by": "ana"}'
  taskbus run cancel EXECUTION_ID --reason "no longer needed"
  taskbus run pause user.approval@1714546800000000
  taskbus run resume user.approval@1714546800000000
  taskbus run retry user.digest@1714546800000000 --from-step summarise
  taskbus run tree user.orders@1714546800000000
  taskbus run query user.orders@1714546800000000 progress --json
  taskbus run update user.orders@1714546800000000 add-item --payload '{"sku": "A1"}'"""

RUN_HELP = "a run key (<task id>@<microseconds>) or the execution id of one of its attempts"


def version() -> str:
    """The installed distribution's version (``unknown`` when run from an uninstalled tree)."""
    try:
        return metadata.version("taskbus")
    except metadata.PackageNotFoundError:
        return "unknown"


def _global_options(default: Any) -> argparse.ArgumentParser:
    """``--home``, ``--config`` and ``--log-level``, each defaulting to ``default``."""
    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group("global options (before or after the command)")
    group.add_argument(
        "--home",
        type=Path,
        default=default,
        help="data directory (default: $TASKBUS_HOME or ~/.local/share/taskbus)",
    )
    group.add_argument(
        "--config",
        type=Path,
        default=default,
        help="a TOML config file (default: $TASKBUS_CONFIG; see docs/configuration.md)",
    )
    group.add_argument(
        "--log-level",
        default=default,
        choices=["debug", "info", "warning", "error"],
        help="what goes to stderr (default: log_level, i.e. $TASKBUS_LOG_LEVEL or info)",
    )
    return options


# Given after the command, a global option overrides the top level's; absent, it leaves it alone.
_GLOBALS = _global_options(argparse.SUPPRESS)


def build(description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="taskbus",
        description=description or DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_global_options(None)],
    )
    parser.add_argument("--version", action="version", version=f"taskbus {version()}")
    commands = _Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    _add_run_commands(commands)
    _add_keys_commands(commands)
    _add_task_commands(commands)
    _add_task_run_commands(commands)
    _add_status_commands(commands)
    _add_store_commands(commands)
    return parser


def settings(args: argparse.Namespace) -> Settings:
    """Defaults < config file < TASKBUS_* environment < these command-line options."""
    overrides: dict[str, object] = {}
    if args.home is not None:
        overrides["paths.data_dir"] = str(args.home.expanduser().resolve())
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    if getattr(args, "endpoint", None):
        overrides["bus.endpoints"] = list(args.endpoint)
    return load_settings(args.config, overrides=overrides)


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


def _verbs(commands: Commands, noun: str, helptext: str, epilog: str | None = None) -> Commands:
    """The sub-commands of ``taskbus <noun>``, which names one in ``<noun>_command``."""
    parser = commands.add_parser(noun, help=helptext, description=helptext, epilog=epilog)
    return _Commands(parser.add_subparsers(dest=f"{noun}_command", required=True))


def _connecting(
    commands: Commands, name: str, helptext: str, func: Handler
) -> argparse.ArgumentParser:
    """A command that talks to a running taskbus: it takes the client options."""
    command: argparse.ArgumentParser = commands.add_parser(
        name, parents=[_CLIENT], help=helptext, description=helptext
    )
    command.set_defaults(func=func)
    return command


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


# ------------------------------------------------------------------ running taskbus


def _add_run_commands(commands: Commands) -> None:
    run = commands.add_parser("up", help="run taskbus on this machine (creates keys on first run)")
    run.add_argument(
        "--endpoint",
        action="append",
        default=None,
        help="tcp:// or ipc:// endpoint to listen on, besides the ipc socket in the data "
        "directory (default: bus.endpoints, i.e. $TASKBUS_ENDPOINT or tcp://127.0.0.1:7420); "
        "repeatable",
    )
    run.add_argument(
        "--http",
        nargs="?",
        const="127.0.0.1:7421",
        default=None,
        metavar="HOST:PORT",
        help="also serve the REST API, /metrics and the dashboard over HTTP (default address "
        "127.0.0.1:7421; needs the http extra; docs/http.md)",
    )
    run.add_argument(
        "--http-allow-remote",
        action="store_true",
        help="let --http listen on a non-loopback address (plain HTTP: tokens cross the "
        "network readable; prefer a TLS proxy)",
    )
    run.set_defaults(func=up.up)

    actor = commands.add_parser("actor", help="run one actor as its own process")
    actor.add_argument(
        "spec",
        help="a built-in actor (health, store, scheduler, executor-<category>) or module:Class",
    )
    actor.add_argument(
        "--connect",
        required=True,
        metavar="ENDPOINT",
        help="the broker's tcp:// or ipc:// endpoint",
    )
    actor.add_argument(
        "--identity",
        default=None,
        help="bus identity (default: the actor's name); its keypair must be in "
        "the keys directory's identities/ and allowed by the broker",
    )
    actor.set_defaults(func=up.actor)


def _add_keys_commands(commands: Commands) -> None:
    verbs = _verbs(commands, "keys", "manage CurveZMQ keys")
    init = verbs.add_parser("init", help="create the broker keypair and a client identity")
    init.add_argument("--identity", default="cli", help="client identity to create (default cli)")
    init.set_defaults(func=keys.init)
    allow = verbs.add_parser("allow", help="admit a client by its public key file")
    allow.add_argument("public_key_file", type=Path)
    allow.add_argument(
        "--identity",
        default=None,
        help="identity to admit it as (default: the file name without .key)",
    )
    allow.set_defaults(func=keys.allow)
    new = verbs.add_parser(
        "new", help="create a client keypair only (on a host that joins a broker elsewhere)"
    )
    new.add_argument("identity")
    new.set_defaults(func=keys.new)
    broker = verbs.add_parser(
        "broker", help="trust a broker's public key file (on a host that joins it)"
    )
    broker.add_argument("public_key_file", type=Path)
    broker.set_defaults(func=keys.broker)
    listing = verbs.add_parser("list", help="list admitted identities, and their HTTP tokens")
    listing.set_defaults(func=keys.listing)
    token = verbs.add_parser(
        "token",
        help="issue an HTTP API token for an identity of this host (printed once, stored hashed)",
    )
    token.add_argument("identity", help="the bus identity requests with the token act as")
    token.add_argument(
        "--revoke", action="store_true", help="revoke every token of the identity instead"
    )
    token.set_defaults(func=keys.token)


# ------------------------------------------------------------------ tasks


def _add_task_commands(commands: Commands) -> None:
    verbs = _verbs(commands, "task", "list, show, create and change tasks", TASK_EXAMPLES)
    listing = _connecting(verbs, "list", "every task with its last and next run", task.list_tasks)
    _json_flag(listing)
    show = _connecting(verbs, "show", "one task: definition, policies, run counts", task.show)
    show.add_argument("task_id")
    describing.next_flag(show)
    _json_flag(show)
    _add_task_definitions(verbs)
    describing.pause_arguments(_connecting(verbs, "pause", describing.PAUSE_HELP, describing.pause))
    _connecting(verbs, "unpause", describing.UNPAUSE_HELP, describing.unpause).add_argument(
        "task_id"
    )
    applying = _connecting(
        verbs, "apply", "make your user.* tasks match a TOML file (plan first)", apply.apply
    )
    applying.add_argument(
        "-f", "--file", type=Path, required=True, help="the tasks: one [[task]] table each"
    )
    applying.add_argument(
        "--prune", action="store_true", help="also delete your user.* tasks the file does not list"
    )
    applying.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    _json_flag(applying)
    for verb, helptext, func in (
        ("delete", "delete a user.* task (its history stays until retention)", task.delete),
        ("enable", "schedule the task again", task.enable),
        ("disable", "stop scheduling the task (trigger still runs it)", task.disable),
        ("reset", "forget the last run: nothing counts as missed, next fire after now", task.reset),
    ):
        _connecting(verbs, verb, helptext, func).add_argument("task_id")
    trigger = _connecting(verbs, "trigger", "run the task now, outside its schedule", task.trigger)
    trigger.add_argument("task_id")
    trigger.add_argument(
        "--key",
        default=None,
        help="a start key: a second trigger with the same key starts nothing and names the "
        "first one's run",
    )
    backfill.arguments(_connecting(verbs, "backfill", backfill.HELP, backfill.backfill))
    for verb, helptext, func in (
        ("logs", "the task's executions, latest first", task.logs),
        ("missed", "the task's fires that did not run, with their reasons", task.missed),
    ):
        rows = _connecting(verbs, verb, helptext, func)
        rows.add_argument("task_id")
        rows.add_argument("--limit", type=int, default=20, help="how many (default 20)")
        if verb == "logs":
            rows.add_argument(
                "--run", default=None, help="one run (its execution id): what it logged"
            )
        _json_flag(rows)


def _add_task_run_commands(commands: Commands) -> None:
    verbs = _verbs(
        commands,
        "run",
        "the runs of tasks: show, list, tree, query, update, signal, cancel, pause, resume, retry",
        RUN_EXAMPLES,
    )
    show = _connecting(
        verbs, "show", "one run (an execution id): its times, steps and log lines", run.show
    )
    show.add_argument("execution_id")
    _json_flag(show)
    listing = _connecting(
        verbs, "list", "the durable runs (slept, waited, signalled, keyed...)", run.list_runs
    )
    listing.add_argument("--task", dest="task_id", default=None, help="one task's runs only")
    listing.add_argument(
        "--state", default=None, choices=RUN_STATES, help="runs in this state only"
    )
    listing.add_argument("--limit", type=int, default=50, help="how many (default 50)")
    _json_flag(listing)
    signal = _connecting(
        verbs, "signal", "send a signal to a run (wakes it if it waits for that name)", run.signal
    )
    signal.add_argument("run", help=RUN_HELP)
    signal.add_argument("name", help="the signal's name, e.g. approve")
    signal.add_argument(
        "--payload",
        default=None,
        metavar="JSON",
        help="what the signal carries, as JSON (default: null)",
    )
    _json_flag(signal)
    cancel = _connecting(
        verbs, "cancel", "cancel a run for good (a live attempt stops at once)", run.cancel
    )
    cancel.add_argument("run", help=RUN_HELP)
    cancel.add_argument("--reason", default="", help="why, kept with the run")
    _json_flag(cancel)
    retry = _connecting(
        verbs, "retry", "run an ended run again (a new attempt), from a step on", run.retry
    )
    retry.add_argument("run", help=RUN_HELP)
    retry.add_argument(
        "--from-step",
        default=None,
        metavar="NAME",
        help="run this step and those stored after it again, keeping the earlier ones "
        "(default: only the steps that failed)",
    )
    _json_flag(retry)
    for verb, helptext, func in (
        ("pause", "hold a run: not woken, and a live one suspends at its next step", run.pause),
        ("resume", "let a paused run go on (woken now if its wake is due)", run.resume),
    ):
        control = _connecting(verbs, verb, helptext, func)
        control.add_argument("run", help=RUN_HELP)
        _json_flag(control)
    tree = _connecting(
        verbs, "tree", "a run with the child runs it spawned, indented: key, task, state", run.tree
    )
    tree.add_argument("run", help=RUN_HELP)
    _json_flag(tree)
    query = _connecting(
        verbs,
        "query",
        "what a run's @query NAME answers (live, or as stored when it suspended)",
        run.query,
    )
    query.add_argument("run", help=RUN_HELP)
    query.add_argument("name", help="the query's name, e.g. progress")
    _json_flag(query)
    update = _connecting(
        verbs,
        "update",
        "send a live run its @update NAME (validated, kept, handled) and print the reply",
        run.update,
    )
    update.add_argument("run", help=RUN_HELP)
    update.add_argument("name", help="the update's name, e.g. add-item")
    update.add_argument(
        "--payload",
        default=None,
        metavar="JSON",
        help="what the update carries, as JSON (default: null)",
    )
    _json_flag(update)


def _add_task_definitions(verbs: Commands) -> None:
    """``task create`` and ``task update``: the commands that write a task's definition."""
    create = _connecting(verbs, "create", "a new user.* task", task.create)
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

    update = _connecting(
        verbs, "update", "change a task's schedule, zone, options, policies", task.update
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
    parser.add_argument(
        "--overlap",
        choices=OVERLAP_RULES,
        default=None,
        help="what a fire does while a run of the task is in progress: skip (default), "
        "buffer_one, buffer_all, cancel_other, allow_all",
    )
    parser.add_argument(
        "--max-runs",
        type=int,
        default=None,
        metavar="N",
        help="after N fires of its schedule the task disables itself",
    )
    parser.add_argument(
        "--depends-on",
        action="append",
        default=None,
        metavar="TASK_ID",
        help="a task whose run for the same logical instant must have succeeded first, "
        "repeatable (on update: replaces the list)",
    )
    parser.add_argument(
        "--no-depends-on", action="store_true", help="clear the task's dependencies"
    )
    parser.add_argument(
        "--depends-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a fire waits for its dependencies before it is blocked (default 3600)",
    )


# ------------------------------------------------------------------ the running system


def _add_status_commands(commands: Commands) -> None:
    stats = _connecting(
        commands, "stats", "the scheduler's counters and the run statistics", status.stats
    )
    _json_flag(stats)
    health = _connecting(
        commands,
        "health",
        "every actor's health; exit 0 healthy, 6 degraded, 7 critical",
        status.health,
    )
    _json_flag(health)
    watch = _connecting(
        commands,
        "watch",
        "print status and health events as they happen, until Ctrl-C",
        status.watch,
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


def _add_store_commands(commands: Commands) -> None:
    verbs = _verbs(commands, "store", "maintain the encrypted store of a running taskbus")
    _connecting(verbs, "check", "run PRAGMA integrity_check on the database", store.check)
    _connecting(
        verbs,
        "rekey",
        "rotate the database key (a backup with the old key is kept beside it)",
        store.rekey,
    )
