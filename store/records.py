"""What the store keeps and returns, as frozen values.

Inputs (``TaskSpec``, ``NewExecution``, ``ExecutionOutcome``, ``NewDeadLetter``,
``NewMissedRun``, ``StepOutcome``, ``NewSignal``, ``RunSuspension``) check their fields at
construction and raise InvalidValue naming the field; records read back from the database are
trusted. Instants are aware datetimes in UTC; maps are plain dicts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from config.cron import CRON_RULES
from store import values
from store.errors import InvalidValue

T = TypeVar("T")
ExecutionState = Literal["running", "succeeded", "failed"]
MAX_RETRY_COUNT = 1_000_000
MAX_MISSED_BATCH = 1_000
MAX_EXECUTION_BATCH = 1_000  # executions, finishes or run marks in one batched request
MAX_LOG_LINES = 200  # log lines kept per run (the first ones; a last line says how many more)
MAX_LOG_LINE_CHARS = 500
# What made a run: its schedule, a manual trigger, a retry of a failed attempt, a catch-up (a
# late fire run after a downtime, possibly standing for several coalesced ones), or a wake (the
# next attempt of a run that suspended: it slept, waited for a signal, or was paused), or a
# backfill (an instant of a past range fired on request: docs/scheduling.md#backfill).
TRIGGERS = frozenset({"schedule", "trigger", "retry", "catch-up", "wake", "backfill"})
# The states of a run (one fire, shared by all its attempts) that used durable features: alive
# (running, or suspended: sleeping or waiting for a signal), or final.
RUN_STATES: tuple[str, ...] = ("running", "sleeping", "waiting", "succeeded", "failed", "cancelled")
FINAL_RUN_STATES = frozenset({"succeeded", "failed", "cancelled"})
SUSPENDED_RUN_STATES = frozenset({"sleeping", "waiting"})
RUN_ACTIONS = frozenset({"cancel", "pause", "resume"})
MAX_SIGNAL_NAME_CHARS = 100  # printable, non-empty
MAX_INBOX_SIGNALS = 1000  # signals a run's inbox may hold; the next put is refused
# The encoded payloads a run's inbox may hold in all, so that its listing always fits a reply.
MAX_INBOX_BYTES = 768 * 1024
MAX_START_KEY_CHARS = 200
# What a child run does when its parent is cancelled: be cancelled too, or run on.
ON_PARENT_CANCEL = frozenset({"cancel", "abandon"})
StepStatus = Literal["ok", "error"]
STEP_STATUSES = frozenset({"ok", "error"})


def signal_name(field: str, value: object) -> str:
    """A signal's name: printable, non-empty text of at most MAX_SIGNAL_NAME_CHARS."""
    checked = values.text(field, value, max_chars=MAX_SIGNAL_NAME_CHARS)
    if not checked.isprintable():
        raise InvalidValue(field, "must be printable (no control characters or line breaks)")
    return checked


def on_parent_cancel_text(field: str, value: object) -> str:
    """What a child run does when its parent is cancelled: one of ON_PARENT_CANCEL."""
    if not isinstance(value, str) or value not in ON_PARENT_CANCEL:
        raise InvalidValue(field, f"expected one of {', '.join(sorted(ON_PARENT_CANCEL))}")
    return str(value)


def query_answers(field: str, value: object) -> dict[str, Any] | None:
    """A run's answers to its queries: None, or a map from query names (printable, non-empty
    text of at most MAX_SIGNAL_NAME_CHARS) to plain data (bounded when stored)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise InvalidValue(field, f"expected a map, got {type(value).__name__}")
    for name in value:
        signal_name(f"{field} key", name)
    return dict(value)


def start_key_text(field: str, value: object) -> str:
    """A start key: printable, non-empty text of at most MAX_START_KEY_CHARS."""
    checked = values.text(field, value, max_chars=MAX_START_KEY_CHARS)
    if not checked.isprintable():
        raise InvalidValue(field, "must be printable (no control characters or line breaks)")
    return checked


def idempotency_key(task_id: str, scheduled_at: datetime, retry_count: int = 0) -> str:
    """``<task id>@<microseconds since the epoch>`` for the first attempt of a fire, followed by
    ``#<retry_count>`` for a retry: one key per attempt. Injective in (task id, instant, retry
    count), because the part after the last ``@`` (which holds no ``@``) is always the instant
    in decimal, then ``#`` and the retry count (1 or more, in decimal) only for a retry.
    """
    key = f"{task_id}@{values.to_us(scheduled_at)}"
    return key if retry_count == 0 else f"{key}#{retry_count}"


MAX_NOTE_CHARS = 500  # a task's note (pause reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskSpec:
    """A task as its owner defines it; ``config`` and the policies are opaque to the store
    (``run_policy``: what the scheduler keeps about how to run it, such as DST rules, jitter, a
    timeout).

    ``next_run`` and ``accounted_through`` are run state the scheduler may set with the
    definition: None keeps the stored values (a new task is accounted for through its creation).
    """

    task_id: str
    task_class: str
    schedule: str
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    enabled: bool = True
    timezone: str = "UTC"
    misfire_policy: Mapping[str, Any] | None = None
    retry_policy: Mapping[str, Any] | None = None
    run_policy: Mapping[str, Any] | None = None
    owner: str = ""
    next_run: datetime | None = None
    accounted_through: datetime | None = None
    # Paused: the task does not fire until unpaused; ``note``: why it is paused, or why the
    # scheduler disabled it (printable text of at most MAX_NOTE_CHARS).
    paused: bool = False
    note: str | None = None

    def __post_init__(self) -> None:
        values.identifier("task_id", self.task_id)
        values.flag("paused", self.paused)
        if self.note is not None:
            values.text("note", self.note, max_chars=MAX_NOTE_CHARS)
            if not self.note.isprintable():
                raise InvalidValue("note", "must be printable (no control characters)")
        values.text("task_class", self.task_class, max_chars=values.MAX_ID_CHARS)
        values.text("schedule", self.schedule, max_chars=values.MAX_ID_CHARS)
        values.flag("enabled", self.enabled)
        values.identifier("timezone", self.timezone)
        values.text("owner", self.owner, max_chars=values.MAX_ID_CHARS, empty=True)
        for name in ("config", "misfire_policy", "retry_policy", "run_policy"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise InvalidValue(name, f"expected a map, got {type(value).__name__}")
        for name in ("next_run", "accounted_through"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, values.instant(name, value))


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    task_id: str
    task_class: str
    schedule: str
    config: dict[str, Any] = field(repr=False)
    enabled: bool
    timezone: str
    misfire_policy: dict[str, Any] | None
    retry_policy: dict[str, Any] | None
    run_policy: dict[str, Any] | None
    owner: str
    created_at: datetime
    updated_at: datetime
    last_run: datetime | None
    next_run: datetime | None
    version: int
    # Every instant of the schedule after this one is owed (run, coalesced or recorded as
    # missed); None only for a row no scheduler has written since version 4 of the schema.
    accounted_through: datetime | None
    # The cron rules the schedule was written under: CRON_RULES (Vixie cron's) for every
    # definition written since version 5 of the schema; 1 (croniter's own reading) for one
    # stored before and not written since, whose meaning may have changed.
    cron_rules: int = CRON_RULES
    # Paused (it does not fire) and the note saying why, or why the scheduler disabled it; the
    # count of its schedule, catch-up and backfill fires (first attempts), for max_runs.
    paused: bool = False
    note: str | None = None
    fire_count: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLine:
    """One line a run logged (``ctx.log``): when, at which level, what (at most
    MAX_LOG_LINE_CHARS characters: longer text is cut)."""

    at: datetime
    level: str
    message: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "at", values.instant("at", self.at))
        values.text("level", self.level, max_chars=values.MAX_ID_CHARS)
        if not isinstance(self.message, str):
            raise InvalidValue("message", f"expected text, got {type(self.message).__name__}")
        object.__setattr__(self, "message", values.truncated(self.message, MAX_LOG_LINE_CHARS))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionOutcome:
    """How a run ended. ``run_started_at`` is when the task really began (after any wait to be
    admitted; None if it never began or is not known): ``duration_seconds`` defaults to
    ``completed_at`` minus it, or minus the execution's dispatch if it is None. ``retry_count``
    None keeps the execution's own (the one it was recorded with). ``logs``: the lines the run
    logged, at most MAX_LOG_LINES.
    """

    completed_at: datetime
    success: bool
    result: Mapping[str, Any] | None = field(default=None, repr=False)
    error_message: str | None = None
    retry_count: int | None = None
    duration_seconds: float | None = None
    run_started_at: datetime | None = None
    logs: tuple[LogLine, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "completed_at", values.instant("completed_at", self.completed_at))
        if self.run_started_at is not None:
            started = values.instant("run_started_at", self.run_started_at)
            object.__setattr__(self, "run_started_at", started)
            if started > self.completed_at:
                raise InvalidValue("run_started_at", "is after completed_at")
        if not isinstance(self.logs, tuple) or not all(
            isinstance(line, LogLine) for line in self.logs
        ):
            raise InvalidValue("logs", "expected a tuple of log lines")
        if len(self.logs) > MAX_LOG_LINES:
            raise InvalidValue("logs", f"has {len(self.logs)} lines, at most {MAX_LOG_LINES}")
        values.flag("success", self.success)
        if self.result is not None and not isinstance(self.result, Mapping):
            raise InvalidValue("result", f"expected a map, got {type(self.result).__name__}")
        if self.error_message is not None:
            values.message("error_message", self.error_message)
        if self.retry_count is not None:
            values.count("retry_count", self.retry_count, high=MAX_RETRY_COUNT)
        if self.duration_seconds is not None:
            values.seconds("duration_seconds", self.duration_seconds)


@dataclass(frozen=True, slots=True, kw_only=True)
class NewExecution:
    """One attempt of a fire of a task, recorded when it is dispatched (``started_at``;
    ``outcome`` None) or once it has ended. ``retry_count`` 0 is the fire's first attempt, 1 its
    first retry...: each attempt is recorded once. The record keeps this ``retry_count`` unless
    ``outcome`` gives one. ``trigger``: what made it (one of TRIGGERS). The execution belongs to
    the task's current incarnation (the task row's ``created_at`` when it is recorded).
    ``start_key``: the caller's idempotency key of a start (``record_fires`` gives the run a row
    holding it, with ``parent_key``, ``spawn_key`` and ``on_parent_cancel`` for a child run).
    """

    task_id: str
    scheduled_at: datetime
    started_at: datetime
    outcome: ExecutionOutcome | None = None
    retry_count: int = 0
    trigger: str = "schedule"
    start_key: str | None = None
    parent_key: str | None = None
    spawn_key: str | None = None
    on_parent_cancel: str = "cancel"

    def __post_init__(self) -> None:
        values.identifier("task_id", self.task_id)
        if self.start_key is not None:
            start_key_text("start_key", self.start_key)
        if self.parent_key is not None:
            values.identifier("parent_key", self.parent_key)
        if self.spawn_key is not None:
            start_key_text("spawn_key", self.spawn_key)
        on_parent_cancel_text("on_parent_cancel", self.on_parent_cancel)
        if self.trigger not in TRIGGERS:
            raise InvalidValue("trigger", f"expected one of {', '.join(sorted(TRIGGERS))}")
        object.__setattr__(self, "scheduled_at", values.instant("scheduled_at", self.scheduled_at))
        object.__setattr__(self, "started_at", values.instant("started_at", self.started_at))
        values.count("retry_count", self.retry_count, high=MAX_RETRY_COUNT)
        if self.outcome is not None and self.outcome.completed_at < self.started_at:
            raise InvalidValue("completed_at", "is before started_at")

    @property
    def idempotency_key(self) -> str:
        return idempotency_key(self.task_id, self.scheduled_at, self.retry_count)


def run_key(task_id: str, scheduled_at: datetime) -> str:
    """The key of a fire, shared by all its attempts: ``<task id>@<microseconds>``, its
    first attempt's idempotency key (a retry's adds ``#<retry_count>``)."""
    return idempotency_key(task_id, scheduled_at)


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOutcome:
    """How one step of a run ended, as ``put_step`` stores it: ``status`` ``ok`` with its
    ``result`` (any msgpack-able value, None included), or ``error`` with its ``error`` text (a
    final failure: the step's own retries were spent). ``attempts``: how many times the step ran
    before this outcome (1 or more); ``name`` is the step's id in its run (``collect`` or
    ``collect[key]``).
    """

    name: str
    status: StepStatus
    started_at: datetime
    finished_at: datetime
    result: Any = field(default=None, repr=False)
    error: str | None = None
    attempts: int = 1

    def __post_init__(self) -> None:
        values.identifier("name", self.name)
        if self.status not in STEP_STATUSES:
            raise InvalidValue("status", f"expected ok or error, got {self.status!r}")
        object.__setattr__(self, "started_at", values.instant("started_at", self.started_at))
        finished = values.instant("finished_at", self.finished_at)
        object.__setattr__(self, "finished_at", finished)
        if finished < self.started_at:
            raise InvalidValue("finished_at", "is before started_at")
        values.count("attempts", self.attempts, low=1, high=MAX_RETRY_COUNT)
        if self.status == "error":
            values.message("error", self.error)
            if self.result is not None:
                raise InvalidValue("result", "a failed step has no result")
        elif self.error is not None:
            raise InvalidValue("error", "a step that succeeded has no error")


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRecord:
    """One step of a run as stored: its run's key (``run_key``), its outcome, and how many
    bytes its encoded result takes (``size_bytes``, 0 for a failed step)."""

    run_key: str
    name: str
    status: str
    result: Any = field(repr=False)
    error: str | None
    attempts: int
    started_at: datetime
    finished_at: datetime
    size_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunMark:
    """A task's latest fire and its next one, as ``mark_run`` stores them (``last_run`` never
    moves backwards; None keeps it)."""

    task_id: str
    last_run: datetime | None = None
    next_run: datetime | None = None

    def __post_init__(self) -> None:
        values.identifier("task_id", self.task_id)
        if self.last_run is not None:
            object.__setattr__(self, "last_run", values.instant("last_run", self.last_run))
        if self.next_run is not None:
            object.__setattr__(self, "next_run", values.instant("next_run", self.next_run))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExecutionRecord:
    """One attempt. ``started_at`` is when it was recorded and dispatched (the scheduler's
    clock); ``run_started_at`` when the task really began on its executor, after any wait to be
    admitted (None while it waits, if it never began, or for a run stored before schema
    version 6); ``duration_seconds`` is from the real start to ``completed_at``. ``trigger``:
    schedule, trigger (manual), retry or catch-up (None before version 6). ``logs``: what the
    run logged through ``ctx.log``.
    """

    execution_id: str
    task_id: str
    scheduled_at: datetime
    started_at: datetime
    completed_at: datetime | None
    success: bool | None
    duration_seconds: float | None
    result: dict[str, Any] | None = field(repr=False)
    error_message: str | None
    retry_count: int
    idempotency_key: str
    trigger: str | None = None
    run_started_at: datetime | None = None
    logs: tuple[LogLine, ...] = field(default=(), repr=False)

    @property
    def state(self) -> ExecutionState:
        if self.success is None:
            return "running"
        return "succeeded" if self.success else "failed"


@dataclass(frozen=True, slots=True)
class Recorded(Generic[T]):
    """A write's record, and whether it was already there (the write changed nothing)."""

    record: T
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page; ``next_cursor`` continues after its last item (None: there is no more).

    ``cursors[i]`` continues after ``items[i]``, for a caller that passes on only part of a page.
    """

    items: tuple[T, ...]
    next_cursor: str | None
    cursors: tuple[str, ...] = ()

    def cut(self, count: int) -> Page[T]:
        """The first ``count`` items, continuing after the last of them."""
        if count >= len(self.items):
            return self
        return Page(self.items[:count], self.cursors[count - 1], self.cursors[:count])


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskStatus:
    task_id: str
    enabled: bool
    last_run: datetime | None
    next_run: datetime | None
    runs: int
    succeeded: int
    failed: int
    running: int
    last_error: str | None
    last_error_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunStats:
    """Counts and durations of finished runs of one task (``task_id`` None: of all tasks).

    Rates are over finished runs (None if there are none); durations over runs that have one.
    ``p95_s`` is the nearest-rank 95th percentile.
    """

    task_id: str | None
    runs: int
    succeeded: int
    failed: int
    running: int
    success_rate: float | None
    failure_rate: float | None
    mean_s: float | None
    min_s: float | None
    max_s: float | None
    p95_s: float | None


@dataclass(frozen=True, slots=True)
class StatsReport:
    """Run statistics, and how many tasks are stored: ``stored_tasks`` counts every task
    definition, enabled or not (what ``task list`` shows an admin), ``enabled_tasks`` those
    enabled (of one task only, with ``task_id``)."""

    overall: RunStats
    tasks: tuple[RunStats, ...]
    since: datetime | None
    stored_tasks: int = 0
    enabled_tasks: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class NewDeadLetter:
    """A fire given up on; ``(task_id, scheduled_at)`` is its key. The scheduler publishes it as
    the ``scheduler.task.dead`` event too: one shape end to end."""

    task_id: str
    scheduled_at: datetime
    attempts: int
    error_type: str
    last_error: str
    reason: str
    failed_at: datetime

    def __post_init__(self) -> None:
        values.identifier("task_id", self.task_id)
        object.__setattr__(self, "scheduled_at", values.instant("scheduled_at", self.scheduled_at))
        values.count("attempts", self.attempts, low=1, high=MAX_RETRY_COUNT)
        values.text("error_type", self.error_type, max_chars=values.MAX_ID_CHARS, empty=True)
        values.message("last_error", self.last_error)
        values.text("reason", self.reason, max_chars=values.MAX_TEXT_CHARS, empty=True)
        object.__setattr__(self, "failed_at", values.instant("failed_at", self.failed_at))


@dataclass(frozen=True, slots=True, kw_only=True)
class DeadLetterRecord:
    dead_letter_id: int
    task_id: str
    scheduled_at: datetime
    attempts: int
    error_type: str
    last_error: str
    reason: str
    failed_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class NewMissedRun:
    """A fire that did not run (``count`` 1, ``first_at`` = ``last_at``), or ``count`` of them
    from ``first_at`` to ``last_at``, and why (text the scheduler chooses). One per task and
    ``first_at``.
    """

    first_at: datetime
    last_at: datetime
    count: int
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_at", values.instant("first_at", self.first_at))
        object.__setattr__(self, "last_at", values.instant("last_at", self.last_at))
        if self.last_at < self.first_at:
            raise InvalidValue("last_at", "is before first_at")
        values.count("count", self.count, low=1)
        values.text("reason", self.reason, max_chars=values.MAX_TEXT_CHARS)


@dataclass(frozen=True, slots=True, kw_only=True)
class MissedRunRecord:
    missed_id: int
    task_id: str
    first_at: datetime
    last_at: datetime
    count: int
    reason: str
    recorded_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """``holder`` owns ``name`` until ``expires_at``; ``token`` grows with every new grant, so a
    write stamped with an older token can be refused (fencing).
    """

    name: str
    holder: str
    token: int
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionReport:
    executions_expired: int
    executions_over_cap: int
    dead_letters_expired: int
    pages_freed: int
    cutoff: datetime
    steps_deleted: int = 0  # steps of runs none of whose attempts is kept any more
    runs_deleted: int = 0  # final runs (and their inboxes) last changed before the cutoff


# ------------------------------------------------------------------ durable runs


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """A run (one fire, shared by all its attempts) that used a durable feature: it suspended,
    got a signal, was cancelled or paused, or was started with a start key (other runs have no
    row). ``state``: one of RUN_STATES; ``paused``: its wakes are held (a live paused run
    suspends at its next boundary). ``wake_at``: when a suspended run wakes (None: only a
    signal or a resume wakes it); ``waiting``: the signal a ``waiting`` run waits for;
    ``consumed``: how many signals of that name it had consumed when it suspended. ``attempt``:
    the last attempt the store heard of; ``wakes``: how many attempts were wakes (not retries).
    ``signals``: how many signals its inbox holds (filled by ``get_run`` and ``list_runs``).
    A child run (spawned by another) names its parent's run key (``parent_key``) and the key
    it was spawned under (``spawn_key``); ``on_parent_cancel`` (one of ON_PARENT_CANCEL) says
    whether cancelling the parent cancels it. ``answers``: its answers to its queries as its
    last suspension or finish stored them (None: none stored).
    """

    run_key: str
    task_id: str
    scheduled_at: datetime
    state: str
    paused: bool
    wake_at: datetime | None
    waiting: str | None
    consumed: int
    attempt: int
    wakes: int
    parent_key: str | None
    spawn_key: str | None
    start_key: str | None
    reason: str | None
    created_at: datetime
    updated_at: datetime
    signals: int = 0
    on_parent_cancel: str = "cancel"
    answers: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def suspended(self) -> bool:
        """Sleeping or waiting: no attempt of it runs."""
        return self.state in SUSPENDED_RUN_STATES

    @property
    def final(self) -> bool:
        return self.state in FINAL_RUN_STATES

    def due(self, now: datetime, available: bool = False) -> bool:
        """Whether a suspended, unpaused run should be woken at ``now``: its ``wake_at`` has
        come; or it waits and ``available`` (a signal named ``waiting`` it has not consumed is
        in its inbox); or it sleeps with no ``wake_at`` (a paused suspension, resumed)."""
        if self.paused or not self.suspended:
            return False
        if self.wake_at is not None and self.wake_at <= now:
            return True
        if self.state == "waiting":
            return available
        return self.wake_at is None


@dataclass(frozen=True, slots=True, kw_only=True)
class NewSignal:
    """A signal for a run: its ``name`` (printable, at most MAX_SIGNAL_NAME_CHARS), a
    ``payload`` (any msgpack-able value, None included; bounded like a step's result), who sent
    it and when."""

    run_key: str
    name: str
    payload: Any = field(default=None, repr=False)
    sender: str
    sent_at: datetime

    def __post_init__(self) -> None:
        values.identifier("run_key", self.run_key)
        signal_name("name", self.name)
        values.text("sender", self.sender, max_chars=values.MAX_ID_CHARS, empty=True)
        object.__setattr__(self, "sent_at", values.instant("sent_at", self.sent_at))


@dataclass(frozen=True, slots=True, kw_only=True)
class InboxSignal:
    """A signal as a run's inbox keeps it: ``seq`` orders every signal of the store; its
    encoded payload takes ``size_bytes``."""

    seq: int
    run_key: str
    name: str
    payload: Any = field(repr=False)
    sender: str
    sent_at: datetime
    size_bytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSuspension:
    """An attempt (``attempt``, 1 or more) of the run ``run_key`` ended without finishing the
    run, at ``at``: it sleeps until ``wake_at``, or waits for the signal ``waiting`` (until
    ``wake_at`` if given, having consumed ``consumed`` signals of that name), or was ``paused``
    (``wake_at`` and ``waiting`` None). ``answers``: the run's answers to its queries, kept
    with the row (None leaves those stored)."""

    run_key: str
    task_id: str
    scheduled_at: datetime
    attempt: int
    wake_at: datetime | None
    waiting: str | None
    consumed: int = 0
    paused: bool = False
    at: datetime
    answers: Mapping[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        values.identifier("run_key", self.run_key)
        values.identifier("task_id", self.task_id)
        object.__setattr__(self, "scheduled_at", values.instant("scheduled_at", self.scheduled_at))
        check_run_key("run_key", self.run_key, self.task_id, self.scheduled_at)
        values.count("attempt", self.attempt, low=1, high=MAX_RETRY_COUNT)
        if self.wake_at is not None:
            object.__setattr__(self, "wake_at", values.instant("wake_at", self.wake_at))
        if self.waiting is not None:
            signal_name("waiting", self.waiting)
        values.count("consumed", self.consumed, high=MAX_INBOX_SIGNALS)
        values.flag("paused", self.paused)
        object.__setattr__(self, "at", values.instant("at", self.at))
        object.__setattr__(self, "answers", query_answers("answers", self.answers))


def check_run_key(field: str, key: str, task_id: str, scheduled_at: datetime) -> str:
    """``key`` if it is the run key of ``task_id``'s fire at ``scheduled_at``; InvalidValue
    names ``field`` otherwise."""
    expected = run_key(task_id, scheduled_at)
    if key != expected:
        raise InvalidValue(field, f"{key!r} is not the key of that fire ({expected!r})")
    return key
