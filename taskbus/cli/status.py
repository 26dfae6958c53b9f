"""``taskbus stats``, ``taskbus health`` and ``taskbus watch``: the state of a running taskbus,
as counters, as each actor's health, and as events while they happen."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import OrderedDict
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from config import topics
from taskbus.cli import format as fmt
from taskbus.cli._remote import call, print_json
from taskbus.cli.exits import EXIT_CRITICAL, EXIT_DEGRADED
from taskbus.client import TaskbusClient
from taskbus.runner import stop_signals


def stats(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        stats = await client.stats()
        if args.json:
            print_json(stats)
            return 0
        upcoming = stats["next_due"]
        runs = stats["runs"]
        print(f"leader           {stats['leader']} (lease token {stats['lease_token']})")
        enabled = f"{stats['enabled']} enabled, " if "enabled" in stats else ""
        print(f"tasks            {stats['tasks']} ({enabled}{stats['scheduled']} scheduled)")
        if upcoming:
            when = fmt.relative(upcoming["at"], datetime.now(UTC))
            print(f"next due         {upcoming['task_id']} {when}")
        print(f"pending retries  {stats['pending_retries']}")
        counters = ", ".join(f"{k} {v}" for k, v in sorted(stats["counters"].items())) or "-"
        print(f"since start      {counters}")
        print(f"runs stored      {_run_stats(runs)}")
        return 0

    return call(args, work)


def _run_stats(runs: dict[str, Any]) -> str:
    parts = [f"{runs.get('runs', 0)} runs"]
    for key, label in (("succeeded", "succeeded"), ("failed", "failed")):
        if key in runs:
            parts.append(f"{runs[key]} {label}")
    for key, label in (("mean_s", "mean"), ("p95_s", "p95")):
        if runs.get(key) is not None:
            parts.append(f"{label} {fmt.seconds(runs[key])}")
    return ", ".join(parts)


def health(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        report = await client.health()
        if args.json:
            print_json(report)
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

    return call(args, work)


def watch(args: argparse.Namespace) -> int:
    """Events as they happen. ``--json``: every event as one JSON object a line on stdout;
    otherwise one line per change, through ``Changes``. The banner goes to stderr."""

    async def work(client: TaskbusClient) -> int:
        with stop_signals() as stop:
            events = await client.watch(*(args.topic or ()))
            print(
                f"watching {', '.join(events.prefixes)} (Ctrl-C to stop)",
                file=sys.stderr,
                flush=True,
            )
            changes = Changes()
            shown = 0
            stopping = asyncio.ensure_future(stop.wait())
            try:
                while args.count is None or shown < args.count:
                    getting = asyncio.ensure_future(events.get())
                    await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                    if not getting.done():
                        getting.cancel()
                        break
                    event = getting.result()
                    if args.json:
                        line = {"topic": event.topic, "sender": event.sender, **event.payload}
                        print(fmt.as_json(line), flush=True)
                    elif changes.new(event.topic, event.payload):
                        received = datetime.now().astimezone()
                        print(
                            fmt.event_line(event.topic, event.sender, event.payload, received),
                            flush=True,
                        )
                    else:
                        continue
                    shown += 1
            finally:
                stopping.cancel()
        return 0

    return call(args, work)


class Changes:
    """Which events a person watching needs to see: health only when it changes (it is also
    published every few seconds unchanged), and a run's state once per transition (a state
    announced again, as a takeover's re-dispatch does, is shown once); everything else,
    progress included, each time."""

    REMEMBERED = 1_000  # runs whose last state is kept

    def __init__(self) -> None:
        self._health: tuple[object, ...] | None = None
        self._states: OrderedDict[str, object] = OrderedDict()

    def new(self, topic: str, payload: Mapping[str, Any]) -> bool:
        if topic == topics.HEALTH:
            actors = payload.get("actors")
            statuses = sorted(
                (str(name), str(actor.get("status")) if isinstance(actor, dict) else "")
                for name, actor in (actors.items() if isinstance(actors, dict) else ())
            )
            health = (payload.get("status"), *statuses)  # reasons' changing numbers aside
            changed, self._health = health != self._health, health
            return changed
        run, state = payload.get("execution_id"), payload.get("state")
        if (
            not isinstance(run, str)
            or state == "progress"
            or not topic.startswith(topics.STATUS_EVENTS)
        ):
            return True
        changed = self._states.get(run) != state
        self._states[run] = state
        self._states.move_to_end(run)
        if len(self._states) > self.REMEMBERED:
            self._states.popitem(last=False)
        return changed
