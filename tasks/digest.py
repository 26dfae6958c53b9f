"""The daily digest's arithmetic: a pure function of the store's replies, run in a process pool.

Kept apart from the task so that it pickles by name and imports nothing heavy in the worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

MAX_ERROR_CHARS = 200


def summarise(
    stats: Mapping[str, Any],
    executions: Sequence[Mapping[str, Any]],
    since: str,
    until: str,
    top: int = 5,
) -> dict[str, Any]:
    """The digest of ``since``..``until`` from a ``store.stats`` reply (with ``since``) and
    recent executions of failing tasks (``store.execution.history`` pages; runs that succeeded
    or started before ``since`` are ignored).

    ``{period, runs, succeeded, failed, running, success_rate, slowest, failing, text}``;
    ``slowest`` by p95 duration and ``failing`` by failures, ``top`` of each.
    """
    overall = stats.get("overall") or {}
    tasks = list(stats.get("tasks") or [])
    start = datetime.fromisoformat(since)
    last_errors: dict[str, Mapping[str, Any]] = {}
    for run in executions:
        started = run.get("started_at")
        if run.get("success") is not False or not started:
            continue
        if datetime.fromisoformat(started) < start:
            continue
        known = last_errors.get(run["task_id"])
        if known is None or datetime.fromisoformat(known["started_at"]) < datetime.fromisoformat(
            started
        ):
            last_errors[run["task_id"]] = run
    slowest = [
        {
            "task_id": task["task_id"],
            "runs": task.get("runs", 0),
            "mean_s": task.get("mean_s"),
            "p95_s": task["p95_s"],
            "max_s": task.get("max_s"),
        }
        for task in sorted(
            (task for task in tasks if task.get("p95_s") is not None),
            key=lambda task: (-task["p95_s"], task["task_id"]),
        )[:top]
    ]
    failing = []
    for task in sorted(
        (task for task in tasks if task.get("failed")),
        key=lambda task: (-task["failed"], task["task_id"]),
    )[:top]:
        last = last_errors.get(task["task_id"], {})
        failing.append(
            {
                "task_id": task["task_id"],
                "failed": task["failed"],
                "runs": task.get("runs", 0),
                "failure_rate": task.get("failure_rate"),
                "last_error": _cut(last.get("error_message")),
                "last_error_at": last.get("started_at"),
            }
        )
    digest: dict[str, Any] = {
        "period": {"since": since, "until": until},
        "runs": overall.get("runs", 0),
        "succeeded": overall.get("succeeded", 0),
        "failed": overall.get("failed", 0),
        "running": overall.get("running", 0),
        "success_rate": overall.get("success_rate"),
        "slowest": slowest,
        "failing": failing,
    }
    digest["text"] = _text(digest)
    return digest


def _cut(message: object) -> str | None:
    if message is None:
        return None
    text = str(message)
    return text if len(text) <= MAX_ERROR_CHARS else f"{text[: MAX_ERROR_CHARS - 1]}…"


def _text(digest: Mapping[str, Any]) -> str:
    period = digest["period"]
    head = f"{period['since']} to {period['until']}: "
    if not digest["runs"]:
        return head + "no runs."
    rate = digest["success_rate"]
    parts = [
        f"{digest['runs']} runs, {digest['succeeded']} succeeded, {digest['failed']} failed, "
        f"{digest['running']} running"
        + (f"; success rate {rate:.1%}." if rate is not None else ".")
    ]
    if digest["slowest"]:
        slow = ", ".join(f"{t['task_id']} {t['p95_s']:.2f}s" for t in digest["slowest"])
        parts.append(f"Slowest (p95): {slow}.")
    for task in digest["failing"]:
        line = f"{task['task_id']} failed {task['failed']} of {task['runs']} runs"
        if task["last_error"]:
            line += f", last at {task['last_error_at']}: {task['last_error']}"
        parts.append(f"Failing: {line}.")
    return head + " ".join(parts)
