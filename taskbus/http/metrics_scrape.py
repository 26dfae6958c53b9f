"""The metrics asked for at scrape time, as metric families: the leading scheduler's
``scheduler.stats``, the health actor's ``scheduler.health`` (every actor's state, and the numbers
each reports in its liveness: executors' runs in progress and event-loop lag, the store's group
commits) and the broker's ``bus.stats`` (docs/http.md#metrics).

Pure: a reply in, families out. A reply of the wrong shape raises ValueError naming the field,
before any family is handed out, so a scrape leaves that source out whole.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)

from actors.health import LEADERSHIP
from config import topics

HEALTH_VALUES = {"healthy": 0.0, "degraded": 1.0, "critical": 2.0}


def scheduler_families(reply: Mapping[str, Any]) -> list[Metric]:
    """From ``scheduler.stats``: tasks, pending retries, the leader's counters and the lease."""
    found: list[Metric] = [
        GaugeMetricFamily(
            "taskbus_tasks", "Tasks stored, enabled or not.", value=_number(reply, "tasks")
        ),
        GaugeMetricFamily(
            "taskbus_tasks_enabled", "Tasks enabled.", value=_number(reply, "enabled")
        ),
        GaugeMetricFamily(
            "taskbus_tasks_scheduled",
            "Tasks the leading scheduler has a next fire for.",
            value=_number(reply, "scheduled"),
        ),
        GaugeMetricFamily(
            "taskbus_pending_retries",
            "Failed attempts waiting for their retry.",
            value=_number(reply, "pending_retries"),
        ),
    ]
    events = CounterMetricFamily(
        "taskbus_scheduler_events",
        "What the leading scheduler did since it took the lease (fires, dispatched, missed, "
        "dead, held...).",
        labels=["event"],
    )
    for name, value in sorted(_map(reply, "counters").items()):
        events.add_metric([str(name)], _value(f"counters.{name}", value))
    holder = GaugeMetricFamily(
        "taskbus_lease_holder",
        "1 for the scheduler that holds the lease and leads (<identity>@<host>:<pid>:<nonce>).",
        labels=["holder"],
    )
    leader = reply.get("leader")
    if leader:  # a leader answers: it has a name, unless it lost the lease while answering
        holder.add_metric([_text(reply, "leader")], 1.0)
    token = GaugeMetricFamily(
        "taskbus_lease_token",
        "The lease's fencing token: one more at every takeover.",
        value=_number(reply, "lease_token"),
    )
    return [*found, events, holder, token]


def health_families(reply: Mapping[str, Any]) -> list[Metric]:
    """From ``scheduler.health``: the overall and every actor's status, restarts, and the
    numbers actors report (``metrics`` of each actor)."""
    overall = GaugeMetricFamily(
        "taskbus_health_status",
        "taskbus's health: 0 healthy, 1 degraded, 2 critical.",
        value=_status(_text(reply, "status"), "status"),
    )
    status = GaugeMetricFamily(
        "taskbus_actor_health_status",
        "Each actor's health: 0 healthy, 1 degraded, 2 critical.",
        labels=["actor"],
    )
    up = GaugeMetricFamily(
        "taskbus_actor_up",
        "1 while the actor runs and reports in time; 0 when it failed, fell silent or cannot do "
        "its job (critical).",
        labels=["actor"],
    )
    restarts = CounterMetricFamily(
        "taskbus_actor_restarts", "Restarts of the actor by its supervisor.", labels=["actor"]
    )
    numbers = _ActorNumbers()
    for name, actor in sorted(_map(reply, "actors").items()):
        if name == LEADERSHIP:
            continue  # not an actor: "no scheduler leads" (taskbus_lease_holder is absent then)
        where = f"actors.{name}"
        if not isinstance(actor, Mapping):
            raise ValueError(f"{where}: expected a map, got {actor!r}")
        value = _status(_text(actor, "status", where), f"{where}.status")
        status.add_metric([str(name)], value)
        up.add_metric([str(name)], 0.0 if value == HEALTH_VALUES["critical"] else 1.0)
        restarts.add_metric([str(name)], _number(actor, "restarts", where))
        numbers.add(str(name), actor.get("metrics") or {}, f"{where}.metrics")
    return [overall, status, up, restarts, *numbers.families()]


class _ActorNumbers:
    """The numbers actors report in their liveness (``Actor.metrics``), as families."""

    def __init__(self) -> None:
        self.in_progress = GaugeMetricFamily(
            "taskbus_executor_runs_in_progress",
            "Runs executing in the executor now (started, not ended).",
            labels=["actor"],
        )
        self.lag = GaugeMetricFamily(
            "taskbus_event_loop_lag_seconds",
            "How late a timer fired on the executor's event loop, at its last report; above "
            "0.1 s it starts no new run.",
            labels=["actor"],
        )
        self.commit = SummaryMetricFamily(
            "taskbus_store_commit_seconds",
            "Time in COMMIT (log write, fsync, checkpoints), per group commit.",
            labels=["actor"],
        )
        self.group = SummaryMetricFamily(
            "taskbus_store_write_group_seconds",
            "Time the database thread spent in each group of writes (statements and COMMIT).",
            labels=["actor"],
        )
        self.writes = CounterMetricFamily(
            "taskbus_store_writes",
            "Writes committed (a group commit holds many).",
            labels=["actor"],
        )
        self.waiting = GaugeMetricFamily(
            "taskbus_store_jobs_waiting",
            "Reads and writes queued for the database thread, not taken yet.",
            labels=["actor"],
        )

    def add(self, actor: str, numbers: object, where: str) -> None:
        if not isinstance(numbers, Mapping):
            raise ValueError(f"{where}: expected a map, got {numbers!r}")
        if "runs_in_progress" in numbers:
            self.in_progress.add_metric([actor], _number(numbers, "runs_in_progress", where))
        if "event_loop_lag_seconds" in numbers:
            self.lag.add_metric([actor], _number(numbers, "event_loop_lag_seconds", where))
        if "commits" in numbers:
            commits = int(_number(numbers, "commits", where))
            self.commit.add_metric([actor], commits, _number(numbers, "commit_seconds", where))
            self.group.add_metric([actor], commits, _number(numbers, "group_seconds", where))
            self.writes.add_metric([actor], _number(numbers, "writes", where))
            self.waiting.add_metric([actor], _number(numbers, "jobs_waiting", where))

    def families(self) -> list[Metric]:
        every = (self.in_progress, self.lag, self.commit, self.group, self.writes, self.waiting)
        return [family for family in every if family.samples]


def bus_families(reply: Mapping[str, Any]) -> list[Metric]:
    """From ``bus.stats``: peers, messages by kind, rejects by code, and every work queue."""
    messages = CounterMetricFamily(
        "taskbus_bus_messages",
        "What the broker handled, by kind (frames_in, published, requests, replies, enqueued, "
        "acked, ...).",
        labels=["kind"],
    )
    for kind, value in sorted(_map(reply, "counters").items()):
        if kind != "dropped_events":
            messages.add_metric([str(kind)], _value(f"counters.{kind}", value))
    rejects = CounterMetricFamily(
        "taskbus_bus_rejects", "What the broker refused, by error code.", labels=["code"]
    )
    for code, value in sorted(_map(reply, "errors").items()):
        rejects.add_metric([str(code)], _value(f"errors.{code}", value))
    return [
        GaugeMetricFamily(
            "taskbus_bus_peers", "Peers registered with the broker.", value=_number(reply, "peers")
        ),
        messages,
        rejects,
        CounterMetricFamily(
            "taskbus_bus_dropped_events",
            "Events the broker dropped for subscribers that could not keep up.",
            value=_number(reply, "dropped_events"),
        ),
        GaugeMetricFamily(
            "taskbus_bus_pending_asks",
            "Asks forwarded to a responder and not answered yet.",
            value=_number(reply, "pending_asks"),
        ),
        *_queue_families(_map(reply, "queues")),
    ]


# A queue's field in bus.stats -> its family: (name, help, counter?)
_QUEUE_FIELDS = (
    ("pending", "taskbus_queue_depth", "Work waiting in the queue, not delivered yet.", False),
    (
        "inflight",
        "taskbus_queue_in_flight",
        "Work delivered and not acknowledged: for a dispatch queue, runs an executor holds "
        "(waiting at its gates or running).",
        False,
    ),
    ("held_bytes", "taskbus_queue_held_bytes", "Bytes of the queue's work, both kinds.", False),
    ("consumers", "taskbus_queue_consumers", "Consumers of the queue.", False),
    ("delivered", "taskbus_queue_delivered", "Deliveries, redeliveries included.", True),
    ("redelivered", "taskbus_queue_redelivered", "Work put back (NACK, consumer lost).", True),
)


def _queue_families(queues: Mapping[str, Any]) -> list[Metric]:
    """One family per field; labels ``queue`` and ``category`` (a dispatch queue's category,
    empty for other queues)."""
    labels = ["queue", "category"]
    families: list[tuple[str, GaugeMetricFamily | CounterMetricFamily]] = [
        (
            field,
            CounterMetricFamily(name, text, labels=labels)
            if counter
            else GaugeMetricFamily(name, text, labels=labels),
        )
        for field, name, text, counter in _QUEUE_FIELDS
    ]
    for queue, numbers in sorted(queues.items()):
        where = f"queues.{queue}"
        if not isinstance(numbers, Mapping):
            raise ValueError(f"{where}: expected a map, got {numbers!r}")
        category = queue.removeprefix(topics.DISPATCH_QUEUES) if _dispatch(queue) else ""
        for field, family in families:
            family.add_metric([str(queue), category], _number(numbers, field, where))
    return [family for _, family in families]


def _dispatch(queue: object) -> bool:
    return isinstance(queue, str) and queue.startswith(topics.DISPATCH_QUEUES)


# ------------------------------------------------------------------ reading replies


def _map(reply: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = reply.get(field)
    if not isinstance(value, Mapping):
        raise ValueError(f"{field}: expected a map, got {value!r}")
    return value


def _number(reply: Mapping[str, Any], field: str, where: str = "") -> float:
    return _value(f"{where}.{field}" if where else field, reply.get(field))


def _value(field: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{field}: expected a number, got {value!r}")
    return float(value)


def _text(reply: Mapping[str, Any], field: str, where: str = "") -> str:
    value = reply.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{f'{where}.' if where else ''}{field}: expected text, got {value!r}")
    return value


def _status(value: str, field: str) -> float:
    if value not in HEALTH_VALUES:
        raise ValueError(f"{field}: expected one of {', '.join(HEALTH_VALUES)}, got {value!r}")
    return HEALTH_VALUES[value]
