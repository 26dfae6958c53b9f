"""What the scheduler sends executors and what they send back.

A fire is dispatched as work on ``scheduler.task.dispatch.<category>`` (only the ``scheduler``
identity may produce there), with the execution's id as the work's message id: a scheduler that
dispatches the same execution again (after a takeover) adds no second copy while the broker holds
the first. An executor runs it, writes the outcome to the store (``store.execution.finish``), then
queues a ``RunResult`` on ``scheduler.task.result`` and only then acknowledges the dispatch: a run
is settled at least once, and its result is never lost once stored.

A run that suspended (a durable sleep or wait) comes back as a ``RunResult`` with ``suspended``:
the scheduler wakes it later with a new attempt (``Dispatch.wakes`` counts the wakes so far). What
the run's owner sends a live run (a signal, cancel, pause, resume) is pushed to the executors of
its category as a ``RunPush`` on ``scheduler.run.deliver.<category>``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from actors.actor import Actor
from actors.scheduling.owners import events_owner
from actors.storing import fields as payloads
from actors.storing.fields import Fields
from actors.storing.wire import plain
from bus import Delivery
from config import topics
from store.errors import InvalidValue

DISPATCH_PREFIX = topics.DISPATCH_QUEUES
RESULT_QUEUE = topics.RESULT_QUEUE
STATUS_TOPIC = topics.STATUS_EVENTS
DEAD_TOPIC = topics.DEAD_EVENTS
ERROR_TOPIC = topics.ERROR_EVENTS
DELIVER_PREFIX = topics.RUN_DELIVER
PUSH_KINDS = ("signal", "cancel", "pause", "resume", "query", "update")


def owner_topic(prefix: str, owner: str) -> str:
    """A task's event topic, ``STATUS_TOPIC`` or ``DEAD_TOPIC`` followed by its owner: the ACL
    lets the owner and the admins receive it (``scheduler.task.status.{identity}``)."""
    return f"{prefix}.{events_owner(owner)}"


def dispatch_queue(task_id: str) -> str:
    """The work queue of the task's category: the first part of its id."""
    return DISPATCH_PREFIX + task_id.partition(".")[0]


def deliver_topic(task_id: str) -> str:
    """Where a run's pushes go: to its task category's executors."""
    return DELIVER_PREFIX + task_id.partition(".")[0]


def work_id(execution_id: str) -> bytes:
    """The dispatch's message id: the execution id's 16 bytes."""
    return uuid.UUID(execution_id).bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """One attempt of one fire, for an executor to run (``attempt`` 1 is the first run;
    ``wakes``: how many of the attempts before it were wakes of a suspended run, not retries)."""

    execution_id: str
    task_id: str
    task_class: str
    scheduled_at: datetime
    attempt: int
    timeout_s: float
    allow_overlap: bool
    config: Mapping[str, Any] = field(default_factory=dict, repr=False)
    owner: str = ""  # whose events its status events are (owner_topic)
    wakes: int = 0

    def payload(self) -> dict[str, Any]:
        return plain(self) | {"config": dict(self.config)}

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> Dispatch:
        """Strictly, as the executor receives it; InvalidValue names a bad field."""
        fields = Fields(payload)
        dispatch = cls(
            execution_id=fields.required("execution_id", payloads.identifier),
            task_id=fields.required("task_id", payloads.identifier),
            task_class=fields.required("task_class", payloads.text),
            scheduled_at=fields.required("scheduled_at", payloads.instant),
            attempt=fields.required("attempt", payloads.positive),
            timeout_s=fields.required("timeout_s", payloads.seconds),
            allow_overlap=fields.required("allow_overlap", payloads.flag),
            config=fields.optional("config", payloads.mapping, {}),
            owner=fields.optional("owner", payloads.any_text, ""),
            wakes=fields.optional("wakes", payloads.count, 0),
        )
        fields.done()
        return dispatch


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """How an attempt ended, once its outcome is in the store.

    ``error_type`` lists the failure's class names along its hierarchy (``error_names``), so the
    retry policy can tell a subclass of a non-retryable error; empty on success.

    A suspended attempt (``suspended``; ``success`` true) left its run stored as sleeping or
    waiting: ``wake_at`` is when the store says to wake it (None: only a signal or a resume
    does), ``wake_now`` that it was due already when it suspended (fire the wake at once). A
    ``cancelled`` attempt ended because its run was cancelled: never retried nor given up.
    ``wakes``: the dispatch's.
    """

    execution_id: str
    task_id: str
    scheduled_at: datetime
    attempt: int
    success: bool
    completed_at: datetime
    error_type: tuple[str, ...] = ()
    error_message: str = ""
    wakes: int = 0
    suspended: bool = False
    wake_at: datetime | None = None
    wake_now: bool = False
    cancelled: bool = False

    def payload(self) -> dict[str, Any]:
        return plain(self)

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> RunResult:
        fields = Fields(payload)
        result = cls(
            execution_id=fields.required("execution_id", payloads.identifier),
            task_id=fields.required("task_id", payloads.identifier),
            scheduled_at=fields.required("scheduled_at", payloads.instant),
            attempt=fields.required("attempt", payloads.positive),
            success=fields.required("success", payloads.flag),
            completed_at=fields.required("completed_at", payloads.instant),
            error_type=fields.optional("error_type", _names, ()),
            error_message=fields.optional("error_message", payloads.message, ""),
            wakes=fields.optional("wakes", payloads.count, 0),
            suspended=fields.optional("suspended", payloads.flag, False),
            wake_at=fields.optional("wake_at", payloads.instant, None),
            wake_now=fields.optional("wake_now", payloads.flag, False),
            cancelled=fields.optional("cancelled", payloads.flag, False),
        )
        fields.done()
        return result


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPush:
    """What the scheduler pushes to the executors of a run's category for its live attempt:
    ``kind`` ``signal`` (with ``seq``, ``name``, ``value``, ``sender``, ``sent_at``), ``cancel``
    (with ``reason``), ``pause``, ``resume``, ``query`` (with ``query_id`` and ``name``: the
    executor holding the run answers ``scheduler.exec.answer``) or ``update`` (with
    ``query_id``, ``name``, ``value`` and ``sender``: answered the same way). On the wire the
    signal's and the update's value is ``payload``: ``{run_key, kind, ...}``, only the fields of
    its kind."""

    run_key: str
    kind: str
    seq: int | None = None
    name: str | None = None
    value: Any = field(default=None, repr=False)
    sender: str | None = None
    sent_at: datetime | None = None
    reason: str = ""
    query_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in PUSH_KINDS:
            raise InvalidValue("kind", f"{self.kind!r}: expected one of {', '.join(PUSH_KINDS)}")
        if self.kind == "signal" and (
            self.seq is None or self.name is None or self.sender is None or self.sent_at is None
        ):
            raise InvalidValue("kind", "a signal push has a seq, a name, a sender and sent_at")
        if self.kind == "query" and (self.query_id is None or self.name is None):
            raise InvalidValue("kind", "a query push has a query_id and a name")
        if self.kind == "update" and (
            self.query_id is None or self.name is None or self.sender is None
        ):
            raise InvalidValue("kind", "an update push has a query_id, a name and a sender")

    def payload(self) -> dict[str, Any]:
        message: dict[str, Any] = {"run_key": self.run_key, "kind": self.kind}
        if self.kind == "signal":
            assert self.sent_at is not None
            message |= {
                "seq": self.seq,
                "name": self.name,
                "payload": self.value,
                "sender": self.sender,
                "sent_at": self.sent_at.isoformat(),
            }
        elif self.kind == "cancel":
            message["reason"] = self.reason
        elif self.kind == "query":
            message |= {"query_id": self.query_id, "name": self.name}
        elif self.kind == "update":
            message |= {
                "query_id": self.query_id,
                "name": self.name,
                "payload": self.value,
                "sender": self.sender,
            }
        return message

    @classmethod
    def read(cls, payload: Mapping[str, Any]) -> RunPush:
        """Strictly, as an executor receives it; InvalidValue names a bad field."""
        fields = Fields(payload)
        run_key = fields.required("run_key", payloads.text)
        kind = fields.required("kind", payloads.text)
        if kind not in PUSH_KINDS:
            raise InvalidValue("kind", f"{kind!r}: expected one of {', '.join(PUSH_KINDS)}")
        if kind == "signal":
            push = cls(
                run_key=run_key,
                kind=kind,
                seq=fields.required("seq", payloads.positive),
                name=fields.required("name", payloads.text),
                value=payload.get("payload"),
                sender=fields.required("sender", payloads.any_text),
                sent_at=fields.required("sent_at", payloads.instant),
            )
            fields.optional("payload", _anything, None)
        elif kind == "cancel":
            reason = fields.optional("reason", payloads.any_text, "")
            push = cls(run_key=run_key, kind=kind, reason=reason)
        elif kind == "query":
            push = cls(
                run_key=run_key,
                kind=kind,
                query_id=fields.required("query_id", payloads.identifier),
                name=fields.required("name", payloads.text),
            )
        elif kind == "update":
            push = cls(
                run_key=run_key,
                kind=kind,
                query_id=fields.required("query_id", payloads.identifier),
                name=fields.required("name", payloads.text),
                value=payload.get("payload"),
                sender=fields.required("sender", payloads.any_text),
            )
            fields.optional("payload", _anything, None)
        else:
            push = cls(run_key=run_key, kind=kind)
        fields.done()
        return push


def _anything(name: str, value: Any) -> Any:
    return value


def _names(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list | tuple):
        return (payloads.text(name, value),)
    return tuple(payloads.text(name, item) for item in value)


async def report_dropped(actor: Actor, queue: str, delivery: Delivery, reason: object) -> None:
    """Log and publish (``scheduler.error``) work that is dropped: it cannot be read, names an
    execution the store does not know, or comes from an identity that may not send it. The
    caller settles it."""
    sender = delivery.envelope.sender
    actor.log.error("dropped work on %s from %s: %s", queue, sender, reason)
    await actor.publish(ERROR_TOPIC, {"topic": queue, "sender": sender, "reason": str(reason)})
