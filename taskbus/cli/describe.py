"""``taskbus task pause <id> [--note TEXT]``, ``taskbus task unpause <id>``, and what ``taskbus
task show`` prints of a task's description: its next fire times in its zone with DST notes, and
its recent actions (docs/scheduling.md#pausing-limited-runs-and-describe)."""

from __future__ import annotations

import argparse
from datetime import datetime, tzinfo

from taskbus.cli import format as fmt
from taskbus.cli._remote import call
from taskbus.client import TaskbusClient
from taskbus.descriptions import TaskDescription

PAUSE_HELP = "stop firing the task until unpause; --note says why"
UNPAUSE_HELP = "fire the task again (the fires it owed while paused are recorded as missed)"
DEFAULT_NEXT = 5
DEFAULT_ACTIONS = 10


def pause_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task_id")
    parser.add_argument("--note", default=None, help="why (printable, at most 500 characters)")


def next_flag(parser: argparse.ArgumentParser) -> None:
    """``task show --next N``."""
    parser.add_argument(
        "--next",
        dest="next_count",
        type=int,
        default=DEFAULT_NEXT,
        metavar="N",
        help=f"list the next N fire times, 1..100 (default {DEFAULT_NEXT})",
    )


def pause(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        task = await client.pause(args.task_id, note=args.note)
        note = f": {task['note']}" if task.get("note") else ""
        print(f"paused {task['task_id']}{note}")
        return 0

    return call(args, work)


def unpause(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        task = await client.unpause(args.task_id)
        missed = task.get("missed")
        line = f"unpaused {task['task_id']}"
        if missed:
            line += (
                f": {missed['count']} fires passed while paused, recorded as missed "
                f"({missed['first_at']} .. {missed['last_at']})"
            )
        print(line)
        return 0

    return call(args, work)


def lines(described: TaskDescription, now: datetime, zone: tzinfo | None) -> list[tuple[str, str]]:
    """``task show``'s lines of the description: state, next fires, recent actions."""
    shown: list[tuple[str, str]] = []
    if described.paused:
        shown.append(("paused", described.note or "yes"))
    elif described.note:
        shown.append(("note", described.note))
    if described.max_runs is not None:
        shown.append(
            ("runs left", f"{described.fire_count} of max_runs {described.max_runs} fired")
        )
    if not described.next:
        shown.append(("next fires", "none"))
    for fire in described.next:
        when = (
            f"{fire.local.isoformat()}  (not fired)"
            if fire.at is None
            else f"{fire.local.isoformat()}  ({fmt.relative(fire.at.isoformat(), now)})"
        )
        if fire.note:
            when += f"  DST: {fire.note}"
        shown.append(("next fire", when))
    for action in described.actions:
        what = f"{fmt.instant(action.at.isoformat(), now, zone)}  {action.action}: {action.reason}"
        if action.count is not None and action.count > 1 and action.first_at is not None:
            first = fmt.instant(action.first_at.isoformat(), now, zone)
            what += f" ({action.count} fires from {first})"
        shown.append(("action", what))
    return shown


def description_json(described: TaskDescription) -> dict[str, object]:
    return {
        "next": [
            {
                "at": None if f.at is None else f.at.isoformat(),
                "local": f.local.isoformat(),
                "note": f.note,
            }
            for f in described.next
        ],
        "actions": [
            {
                "at": a.at.isoformat(),
                "action": a.action,
                "reason": a.reason,
                "execution_id": a.execution_id,
                "count": a.count,
            }
            for a in described.actions
        ],
    }
