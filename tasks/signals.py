"""Signals: named messages sent to one run (``scheduler.run.signal``) and kept in its inbox, in
the order the store took them (``seq``). A task takes them with ``await ctx.wait_signal(name)``
(each signal once per run, whatever the attempts) or lets a handler method take every signal of
a name (``@signal_handler(name)``). The model: docs/runs.md.

Where a run's inbox is read from is a :class:`SignalInbox`: the executor gives each run one over
the store (``store.run.signal.list``) and pushes the signals sent while the run is live to its
:class:`RunSignals` (``deliver``); :class:`MemoryInbox` keeps them in memory (tests).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from tasks._marks import marked
from tasks.errors import TaskDefinitionError, TaskUsageError

MAX_SIGNAL_NAME_CHARS = 100  # as the store's bound (store.records)
CONTROL_SIGNALS = frozenset({"cancel", "pause", "resume"})  # act on the run, never reach a task
CHILD_SIGNAL_PREFIX = "child:"  # internal: a child run's outcome (tasks.children), never a user's
UPDATE_SIGNAL_PREFIX = "update:"  # internal: an accepted update (tasks.updates), never a signal
_HANDLES = "__taskbus_signal__"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True, kw_only=True)
class Signal:
    """One signal of a run's inbox: ``seq`` orders all signals (the store's, global)."""

    seq: int
    name: str
    payload: Any = field(default=None, repr=False)
    sender: str = ""
    sent_at: datetime


class SignalInbox(Protocol):
    """Where one run's signals are read from."""

    async def load(self) -> Sequence[Signal]:
        """The run's signals, in seq order."""
        ...


class MemoryInbox:
    """Signals kept in memory (tests, a context built by hand)."""

    def __init__(self, signals: Sequence[Signal] = ()) -> None:
        self.signals: list[Signal] = list(signals)

    async def load(self) -> Sequence[Signal]:
        return tuple(sorted(self.signals, key=lambda signal: signal.seq))

    def put(
        self, name: str, payload: Any = None, *, sent_at: datetime, sender: str = "test"
    ) -> Signal:
        """Keep a new signal (seq: one more than the last) and return it."""
        seq = max((signal.seq for signal in self.signals), default=0) + 1
        signal = Signal(seq=seq, name=name, payload=payload, sender=sender, sent_at=sent_at)
        self.signals.append(signal)
        return signal


def check_signal_name(name: object, what: str = "a signal's name") -> str:
    """``name`` if it is printable text of 1..MAX_SIGNAL_NAME_CHARS characters that is neither
    a control signal's name nor an internal one (``child:*``, ``update:*``); else
    TaskUsageError."""
    if (
        not isinstance(name, str)
        or not name
        or len(name) > MAX_SIGNAL_NAME_CHARS
        or not name.isprintable()
    ):
        shown = name[:40] if isinstance(name, str) else name
        raise TaskUsageError(
            f"{what} is printable text of 1..{MAX_SIGNAL_NAME_CHARS} characters, not {shown!r}"
        )
    if name in CONTROL_SIGNALS:
        raise TaskUsageError(
            f"signal {name!r}: the names {', '.join(sorted(CONTROL_SIGNALS))} control the run "
            "and never reach a task"
        )
    if name.startswith(CHILD_SIGNAL_PREFIX):
        raise TaskUsageError(
            f"signal {name!r}: the names {CHILD_SIGNAL_PREFIX}* are internal (a child run's "
            "outcome, taken by the child's handle.result())"
        )
    if name.startswith(UPDATE_SIGNAL_PREFIX):
        raise TaskUsageError(
            f"signal {name!r}: the names {UPDATE_SIGNAL_PREFIX}* are internal (an accepted "
            "update, handled by the task's @update method)"
        )
    return name


class RunSignals:
    """One run's signals: its inbox as loaded (once), merged by seq with the signals pushed to
    the live run (``deliver``). Waiters are woken by each push (``changed``), never by polling.
    Used from the run's event loop only."""

    def __init__(self, inbox: SignalInbox | None) -> None:
        self._inbox = inbox
        self._by_seq: dict[int, Signal] = {}
        self._loading: asyncio.Task[Sequence[Signal]] | None = None
        self._merged = False
        self._changed = asyncio.Event()
        self.used = False  # whether the run looked at its signals or was sent one

    async def load(self) -> None:
        """Read the inbox, once (concurrent callers share the read)."""
        self.used = True
        if self._merged:
            return
        if self._inbox is None:
            self._merged = True
            return
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._inbox.load())
        loaded = await asyncio.shield(self._loading)
        if not self._merged:
            self._merged = True
            for signal in loaded:
                self._by_seq.setdefault(signal.seq, signal)

    def deliver(self, signal: Signal) -> None:
        """For the executor: a signal sent to the live run (a second delivery of a seq is a
        no-op). Wakes whoever waits for a signal."""
        self.used = True
        if signal.seq in self._by_seq:
            return
        self._by_seq[signal.seq] = signal
        self._notify()

    def changed(self) -> asyncio.Event:
        """An event set at the next change (a delivered signal, or ``interrupt``): take it
        BEFORE looking at the signals, then wait on it."""
        return self._changed

    def interrupt(self) -> None:
        """Wake every waiter (the run was cancelled or paused)."""
        self._notify()

    def named(self, name: str) -> list[Signal]:
        """The signals named ``name`` known so far, in seq order."""
        return sorted(
            (signal for signal in self._by_seq.values() if signal.name == name),
            key=lambda signal: signal.seq,
        )

    def ordered(self) -> list[Signal]:
        """Every signal known so far, in seq order."""
        return [self._by_seq[seq] for seq in sorted(self._by_seq)]

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()


def signal_handler(name: str) -> Callable[[F], F]:
    """Mark ``async def on_x(self, ctx, payload) -> None`` of a BaseTask subclass as the handler
    of every signal ``name`` sent to a run of the task: each is handled once per run, in the
    order the signals were sent, as the run's step ``handled:<seq>`` (docs/runs.md). A name
    with a handler cannot be waited for with ``ctx.wait_signal``."""
    check_signal_name(name, "a signal_handler's name")

    def mark(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TaskDefinitionError(
                f"signal_handler({name!r}) marks an async def method, not {fn!r}"
            )
        setattr(fn, _HANDLES, name)
        return fn

    return mark


def handlers_of(cls: type) -> dict[str, str]:
    """``{signal name: method name}`` of ``cls``'s ``@signal_handler`` methods (a subclass's
    method overrides its base's of the same name); TaskDefinitionError if two methods of the
    class handle one signal."""
    return marked(cls, lambda value: getattr(value, _HANDLES, None), "signal", "handlers")
