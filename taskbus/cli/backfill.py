"""``taskbus task backfill <id> --from ISO --to ISO [--overlap RULE]``: fire every instant of a
task's schedule in a past range once (docs/scheduling.md#backfill)."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime

from scheduler.backfill import MAX_BACKFILL
from scheduler.policies import OVERLAP_RULES
from taskbus.cli._remote import call, print_json
from taskbus.client import Backfilled, TaskbusClient

HELP = "fire every instant of the task's schedule in a past range once"
MIN_TIMEOUT_S = 60.0  # recording and dispatching up to 10,000 fires takes longer than an ask


def instant(text: str) -> datetime:
    """An ISO 8601 date-time with a UTC offset (``2026-05-01T00:00:00Z``, ``...+02:00``)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date and time (e.g. 2026-05-01T00:00:00Z)"
        ) from None
    if parsed.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset, and a local time is not guessed: add Z or +02:00"
        )
    return parsed


def arguments(parser: argparse.ArgumentParser) -> None:
    """The command's own arguments."""
    parser.add_argument("task_id")
    parser.add_argument(
        "--from",
        dest="start",
        type=instant,
        required=True,
        metavar="ISO",
        help="the first instant of the range, included (with an offset: Z or +02:00)",
    )
    parser.add_argument(
        "--to",
        dest="end",
        type=instant,
        required=True,
        metavar="ISO",
        help="the last instant of the range, included; not after now",
    )
    parser.add_argument(
        "--overlap",
        default=None,
        choices=OVERLAP_RULES,
        help="the overlap rule of these fires instead of the task's (default buffer_all: "
        "one after another)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.epilog = (
        f"At most {MAX_BACKFILL:,} instants at once. An instant that ran before (or runs, or "
        "waits) is not fired again.\n\nexample:\n  taskbus task backfill user.report "
        "--from 2026-05-01T00:00:00Z --to 2026-05-07T23:59:59Z"
    )


def backfill(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        done = await client.backfill(
            args.task_id,
            args.start,
            args.end,
            overlap=args.overlap,
            timeout_s=max(args.timeout, MIN_TIMEOUT_S),
        )
        if args.json:
            print_json(
                {
                    name: value.isoformat() if isinstance(value, datetime) else value
                    for name, value in dataclasses.asdict(done).items()
                }
            )
        else:
            print(summary(done))
        return 0

    return call(args, work)


def summary(done: Backfilled) -> str:
    """One line: how many instants, how many fired, how many were recorded before."""
    if not done.instants:
        return (
            f"backfilled {done.task_id}: its schedule has no instant from "
            f"{done.start.isoformat()} to {done.end.isoformat()}; nothing fired"
        )
    assert done.first is not None
    assert done.last is not None
    return (
        f"backfilled {done.task_id}: {done.instants} instants from {done.first.isoformat()} "
        f"to {done.last.isoformat()}: {done.fired} fired (overlap {done.overlap}), "
        f"{done.already} recorded before and not fired again"
    )
