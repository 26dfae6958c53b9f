"""``taskbus task apply -f tasks.toml [--prune] [--dry-run]``: make the asker's stored ``user.*``
tasks match a file. The plan is printed first (asked as a dry run), then applied, each change
on a line of its own; ``--dry-run`` stops after the plan.

The file holds one ``[[task]]`` table per task, whose keys are ``scheduler.task.create``'s
fields (docs/scheduling.md#batch-and-declarative-tasks)::

    [[task]]
    task_id = "user.reflect"
    task_class = "tasks.reminders:Reminder"
    schedule = "0 23 * * *"
    timezone = "Europe/Berlin"
    config = { message = "time to reflect" }
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bus import RemoteError
from config.errors import TaskbusError
from taskbus.batches import MAX_BATCH, ApplyPlan, PlanEntry
from taskbus.cli import format as fmt
from taskbus.cli._remote import call, print_json
from taskbus.client import TaskbusClient

FIELDS = (
    "task_id",
    "task_class",
    "schedule",
    "timezone",
    "config",
    "enabled",
    "misfire_policy",
    "retry_policy",
    "run_policy",
)
REQUIRED = ("task_id", "task_class", "schedule")
MAPS = ("config", "misfire_policy", "retry_policy", "run_policy")
MARKS = {"create": "+", "update": "~", "delete": "-", "unchanged": "="}
DONE = {"create": "created", "update": "updated", "delete": "deleted", "unchanged": "kept"}


class BadFile(TaskbusError):
    """The tasks file cannot be read as a list of task definitions."""


def read_file(path: Path) -> list[dict[str, Any]]:
    """The ``[[task]]`` tables of ``path`` as create payloads; BadFile says what is wrong and
    where (the table's number, 1 first, and its id)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFile(f"{path}: cannot be read: {exc}") from exc
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BadFile(f"{path}: not TOML: {exc}") from exc
    others = sorted(set(document) - {"task"})
    if others:
        raise BadFile(f"{path}: unknown key {others[0]!r}: the file holds [[task]] tables only")
    tables = document.get("task", [])
    if not isinstance(tables, list):
        raise BadFile(f"{path}: 'task' must be [[task]] tables, one per task")
    if len(tables) > MAX_BATCH:
        raise BadFile(f"{path}: {len(tables)} tasks, at most {MAX_BATCH} in one file")
    return [_definition(path, number, table) for number, table in enumerate(tables, 1)]


def _definition(path: Path, number: int, table: Mapping[str, Any]) -> dict[str, Any]:
    where = f"{path}: [[task]] {number}"
    if isinstance(table.get("task_id"), str):
        where += f" ({table['task_id']})"
    unknown = sorted(set(table) - set(FIELDS))
    if unknown:
        raise BadFile(f"{where}: unknown key {unknown[0]!r}; expected {', '.join(FIELDS)}")
    missing = [name for name in REQUIRED if name not in table]
    if missing:
        raise BadFile(f"{where}: {missing[0]!r} is required")
    for name in MAPS:
        if name in table and not isinstance(table[name], dict):
            raise BadFile(f"{where}: {name!r} must be a table")
    _plain(where, "", table)
    return dict(table)


def _plain(where: str, path: str, value: Any) -> None:
    """BadFile for a TOML date or time anywhere in a definition: taskbus stores plain values
    (quote an instant to pass it as text)."""
    if isinstance(value, dt.date | dt.time):
        raise BadFile(f"{where}: {path}: a TOML date or time; quote it to pass it as text")
    if isinstance(value, dict):
        for key, item in value.items():
            _plain(where, f"{path}.{key}" if path else key, item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _plain(where, f"{path}[{index}]", item)


def apply(args: argparse.Namespace) -> int:
    tasks = read_file(args.file)

    async def work(client: TaskbusClient) -> int:
        try:
            plan = await client.apply(tasks, prune=args.prune, dry_run=True)
        except RemoteError as exc:
            raise _in_file(exc, args.file, tasks) from exc
        if args.json and args.dry_run:
            print_json(_as_json(plan))
            return 0
        if not args.json:
            print_plan(plan, prune=args.prune)
        if args.dry_run or not plan.changes:
            return 0
        applied = await client.apply(tasks, prune=args.prune)
        if args.json:
            print_json(_as_json(applied))
        else:
            print_results(applied)
        return 1 if applied.failed else 0

    return call(args, work)


def _in_file(error: RemoteError, path: Path, tasks: list[dict[str, Any]]) -> TaskbusError:
    """A refusal naming ``tasks[i]`` as the file's table: ``[[task]] i+1 (<id>)``."""
    found = re.search(r"tasks\[(\d+)\]\.?", error.reason)
    if found is None or int(found[1]) >= len(tasks):
        return error
    number = int(found[1])
    rest = error.reason[found.end() :]
    return BadFile(f"{path}: [[task]] {number + 1} ({tasks[number]['task_id']}): {rest}")


def print_plan(plan: ApplyPlan, *, prune: bool) -> None:
    counts = plan.counts
    summary = (
        f"plan: {counts.get('create', 0)} to create, {counts.get('update', 0)} to update, "
        f"{counts.get('delete', 0)} to delete, {counts.get('unchanged', 0)} unchanged"
    )
    if not prune:
        summary += " (without --prune: tasks not in the file are kept)"
    print(summary)
    rows = [[MARKS.get(entry.action, "?"), entry.task_id, _action(entry)] for entry in plan.entries]
    if rows:
        print(fmt.table(["", "TASK", "ACTION"], rows))
    if not plan.changes:
        print("nothing to change")


def print_results(plan: ApplyPlan) -> None:
    for entry in plan.entries:
        if entry.action == "unchanged":
            continue
        if entry.ok:
            version = (entry.task or {}).get("version")
            line = f"{DONE[entry.action]} {entry.task_id}"
            if entry.action == "update" and version is not None:
                line += f" to version {version}"
            print(line)
        else:
            error = entry.error
            why = f"{error.code}: {error.reason}" if error else "refused"
            print(f"taskbus: {entry.action} {entry.task_id} failed: {why}", file=sys.stderr)
    done = sum(bool(entry.ok) for entry in plan.entries if entry.action != "unchanged")
    print(f"applied {done} of {plan.changes} changes, {plan.failed} failed")


def _action(entry: PlanEntry) -> str:
    if entry.action == "update" and entry.changes:
        return f"update ({', '.join(entry.changes)})"
    return entry.action


def _as_json(plan: ApplyPlan) -> dict[str, Any]:
    return {
        "dry_run": plan.dry_run,
        "counts": plan.counts,
        "failed": plan.failed,
        "plan": [
            {
                "task_id": entry.task_id,
                "action": entry.action,
                "changes": list(entry.changes),
                "ok": entry.ok,
                "error": None
                if entry.error is None
                else {"code": entry.error.code, "reason": entry.error.reason},
            }
            for entry in plan.entries
        ],
    }
