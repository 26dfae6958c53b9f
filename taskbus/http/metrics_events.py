"""The metrics the status events feed: runs by state, firing lateness and run duration, deferrals
by gate, retries and dead letters (docs/http.md#metrics).

Sans-I/O: ``EventMetrics.take(event)`` folds one ``scheduler.task.status.<owner>`` or
``scheduler.task.dead.<owner>`` event (docs/protocol.md, status events) into counters and
histograms of a ``CollectorRegistry``. Times come from the events: an event's timestamp is its
publisher's clock when it published it, so a run's duration is measured on one executor's clock
(its ``started`` to its end), and its lateness is its ``started`` less the instant it was due.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from bus import Envelope
from config import topics
from tasks.permissions import category_of

log = logging.getLogger("taskbus.http.metrics")

LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
MAX_TRACKED = 10_000  # runs between their first event and their end, at most (oldest forgotten)

# The states taskbus_runs_total counts: each a run reaches at most once per attempt. Not counted
# there: the executor's own ``queued`` (its receipt of the scheduler's), ``progress``, and the
# holds (``deferred``, ``buffered``, ``waiting``), which taskbus_deferrals_total counts by gate.
SCHEDULER_RUN_STATES = frozenset({"queued", "skipped", "blocked"})
EXECUTOR_RUN_STATES = frozenset(
    {
        "started",
        "succeeded",
        "failed",
        "skipped",
        "timed_out",
        "suspended",
        "cancelled",
        "quarantined",
    }
)
ENDS = frozenset({"succeeded", "failed", "skipped", "timed_out", "suspended", "cancelled"})
# The ``queued`` reasons whose runs are due at their ``scheduled_at``: the lateness of a retry,
# a wake, a catch-up or a backfill is its design, not the scheduler's delay.
ON_TIME_TRIGGERS = frozenset({"schedule", "trigger"})
HOLDS = frozenset({"deferred", "buffered", "waiting"})
# A hold's reason (docs/protocol.md, status events) -> its gate, by how the reason starts.
GATES = (
    ("concurrency", "concurrency"),  # executor "concurrency limit reached"; scheduler "...:"
    ("overlap:", "overlap"),  # the scheduler's overlap rule
    ("the previous run of this task", "overlap"),  # the executor's check
    ("event loop lags", "lag"),
    ("cpu ", "load"),
    ("memory ", "load"),
    ("waiting for the system to be idle", "idle"),
)


def gate_of(state: str, reason: str) -> str:
    """The gate a hold (``deferred``, ``buffered``, ``waiting``) waits at: ``concurrency``,
    ``overlap``, ``lag``, ``load``, ``idle``, ``dependencies`` or ``other``."""
    if state == "waiting":
        return "dependencies"
    return next((gate for start, gate in GATES if reason.startswith(start)), "other")


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """The fields of an event the metrics use; ``read`` raises ValueError naming the field."""

    dead: bool
    category: str
    state: str
    at: float  # the publisher's clock, seconds since the epoch
    execution_id: str | None = None
    scheduled_at: float | None = None
    executor: bool = False  # published by an executor (it names its category), not the scheduler
    reason: str = ""

    @classmethod
    def read(cls, event: Envelope) -> StatusEvent:
        payload = event.payload
        dead = event.topic.startswith(topics.DEAD_EVENTS + ".")
        category = category_of(_text(payload, "task_id"))
        if dead:
            return cls(dead=True, category=category, state="dead", at=event.timestamp)
        scheduled = payload.get("scheduled_at")
        return cls(
            dead=False,
            category=category,
            state=_text(payload, "state"),
            at=event.timestamp,
            execution_id=_text(payload, "execution_id") if "execution_id" in payload else None,
            scheduled_at=None if scheduled is None else _instant(scheduled),
            executor="executor" in payload,
            reason=str(payload.get("reason") or ""),
        )


@dataclass(slots=True)
class _Run:
    """What is known of one attempt between its events."""

    trigger: str | None = None  # the scheduler's ``queued`` reason
    due: float | None = None  # its scheduled_at
    started: float | None = None  # its ``started``, on its executor's clock
    late_observed: bool = False


class EventMetrics:
    """The event-fed metrics, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.runs = Counter(
            "taskbus_runs",
            "Runs that reached a state (queued, started, succeeded, failed, ...), by category.",
            ["state", "category"],
            registry=registry,
        )
        self.lateness = Histogram(
            "taskbus_firing_lateness_seconds",
            "How late runs started after the instant they were due (scheduled and triggered "
            "runs' first attempts).",
            ["category", "trigger"],
            buckets=LATENESS_BUCKETS,
            registry=registry,
        )
        self.duration = Histogram(
            "taskbus_run_duration_seconds",
            "How long attempts ran, from started to their end, by how they ended.",
            ["category", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.deferrals = Counter(
            "taskbus_deferrals",
            "Holds of a run's start, by the gate it waited at.",
            ["category", "gate"],
            registry=registry,
        )
        self.retries = Counter(
            "taskbus_retries",
            "Failed attempts the scheduler will retry.",
            ["category"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "taskbus_dead_letters",
            "Fires given up on (retries exhausted, quarantined).",
            ["category"],
            registry=registry,
        )
        self.unreadable = Counter(
            "taskbus_metrics_unreadable_events",
            "Status or dead-letter events the metrics could not read (and left out).",
            registry=registry,
        )
        self._tracked: OrderedDict[str, _Run] = OrderedDict()

    @property
    def tracked(self) -> int:
        """Runs between their first event and their end now."""
        return len(self._tracked)

    def take(self, event: Envelope) -> None:
        """Fold one event in; one that cannot be read changes nothing but the unreadable count."""
        try:
            status = StatusEvent.read(event)
        except ValueError as exc:
            self.unreadable.inc()
            log.warning(
                "metrics.unreadable topic=%s sender=%s reason=%s", event.topic, event.sender, exc
            )
            return
        self._fold(status)

    def _fold(self, event: StatusEvent) -> None:
        category, state = event.category, event.state
        if event.dead:
            self.dead_letters.labels(category).inc()
            return
        if state == "retry_scheduled":
            self.retries.labels(category).inc()
            return
        if state in HOLDS:
            self.deferrals.labels(category, gate_of(state, event.reason)).inc()
            return
        counted = EXECUTOR_RUN_STATES if event.executor else SCHEDULER_RUN_STATES
        if state in counted:
            self.runs.labels(state, category).inc()
        if state == "quarantined":  # its executor stored the dead letter, without an event
            self.dead_letters.labels(category).inc()
        if event.execution_id is not None:
            self._timings(event)

    def _timings(self, event: StatusEvent) -> None:
        assert event.execution_id is not None
        run = self._tracked.get(event.execution_id)
        if run is None:
            if event.state not in ("queued", "started"):
                return  # its start was not seen: nothing to time
            run = self._tracked[event.execution_id] = _Run()
            while len(self._tracked) > MAX_TRACKED:
                self._tracked.popitem(last=False)
        run.due = event.scheduled_at if event.scheduled_at is not None else run.due
        if event.state == "queued" and not event.executor:
            run.trigger = event.reason  # may arrive after the executor's events: any order
        elif event.state == "started" and event.executor:
            run.started = event.at
        self._late(event.category, run)
        if event.executor and event.state in ENDS:
            if run.started is not None:
                self.duration.labels(event.category, event.state).observe(
                    max(0.0, event.at - run.started)
                )
            del self._tracked[event.execution_id]
        elif event.state in ("quarantined", "skipped", "blocked"):
            del self._tracked[event.execution_id]

    def _late(self, category: str, run: _Run) -> None:
        trigger = run.trigger
        if run.late_observed or run.started is None or run.due is None or trigger is None:
            return
        if trigger in ON_TIME_TRIGGERS:
            run.late_observed = True
            self.lateness.labels(category, trigger).observe(max(0.0, run.started - run.due))


def _text(payload: Any, field: str) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: expected text, got {value!r}")
    return value


def _instant(value: object) -> float:
    if not isinstance(value, str):
        raise ValueError(f"scheduled_at: expected an ISO 8601 instant, got {value!r}")
    try:
        instant = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"scheduled_at: {exc}") from None
    if instant.tzinfo is None:
        raise ValueError(f"scheduled_at: {value!r} has no offset")
    return instant.timestamp()
