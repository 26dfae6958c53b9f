"""Overlap and concurrency: which recorded fires go on, which wait, which are skipped. Pure: no
I/O, no clock; the scheduler's run gate (``actors.scheduling.gate``) drives it and does the
writes (docs/scheduling.md#overlap-and-concurrency).

Two books, each keyed by what the caller passes in an ``Ask`` (its own fire rides along as
``item``):

- ``OverlapBook``: the runs of each task in progress, from their first dispatch until their
  final result, and the fires each task's overlap rule holds back. A run's later attempts
  (retries, wakes, a recovery of a run it knows) always go on. A new run of a task with a run in
  progress goes by the rule: ``skip`` (skipped), ``buffer_one`` (one held, later ones skipped),
  ``buffer_all`` (all held, in order), ``cancel_other`` (the runs in progress are to be
  cancelled; the newest fire waits for their end, an older waiting one is skipped), ``allow_all``
  (goes on). A fire that is owed whatever the rule (``owed``: a takeover dispatches it again, or
  the misfire policy decided a catch-up runs), and an attempt of a run the book does not know,
  is held while another run of its task is in progress: a run never goes twice at once with
  another of its task, and nothing recorded or decided is dropped.
- ``SlotBook``: attempts dispatched and not yet ended, counted per category, in total and per
  concurrency key, against their limits; a fire over a limit waits, first in, first out per key
  and per category, and goes when an attempt ends.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Generic, Literal, TypeVar

from scheduler.policies import OverlapRule

T = TypeVar("T")

BUFFER_FULL = "overlap: buffer full"


@dataclass(frozen=True, slots=True, kw_only=True)
class Ask(Generic[T]):
    """One recorded attempt asking to go on. ``continued``: not the first attempt of its run (a
    retry, a wake); ``owed``: why it is held, never skipped, behind a run in progress ("" for a
    fire the rule decides; ``dispatched again`` by a takeover, ``a catch-up``). ``key``: its
    concurrency key
    (None: none), at most ``key_limit`` attempts of that key at once."""

    item: T
    task_id: str
    instant: datetime
    execution_id: str
    rule: OverlapRule = "skip"
    continued: bool = False
    owed: str = ""
    category: str = ""
    key: str | None = None
    key_limit: int = 1


Action = Literal["go", "hold", "skip", "cancel"]


@dataclass(frozen=True, slots=True)
class Verdict(Generic[T]):
    """What the overlap rule does with an ask: ``go``; ``hold`` it (``reason``); ``skip`` it
    (``reason``: recorded missed); ``cancel``: hold it and cancel the runs ``cancel`` (their
    instants). ``dropped``: asks held before that this one displaced, to be skipped with
    ``BUFFER_FULL``-like reasons (``cancel_other`` keeps only the newest waiting)."""

    action: Action
    reason: str = ""
    cancel: tuple[datetime, ...] = ()
    dropped: tuple[Ask[T], ...] = ()


@dataclass(slots=True)
class _Run:
    execution_id: str  # its latest attempt gone on
    out: int = 1  # attempts gone on and not ended
    cancelling: bool = False


class OverlapBook(Generic[T]):
    """The runs in progress per task and the fires held behind them."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[datetime, _Run]] = {}
        self._held: dict[str, deque[Ask[T]]] = {}

    def in_progress(self, task_id: str) -> list[datetime]:
        """The instants of the task's runs in progress, oldest first."""
        return sorted(self._runs.get(task_id, {}))

    def idle(self, task_id: str) -> list[datetime]:
        """The task's runs in progress with no attempt out (suspended, or waiting for a retry,
        or ended without a result: a caller may check them and ``forget`` the ended ones)."""
        return sorted(i for i, run in self._runs.get(task_id, {}).items() if run.out == 0)

    def held(self, task_id: str | None = None) -> int:
        if task_id is not None:
            return len(self._held.get(task_id, ()))
        return sum(len(waiting) for waiting in self._held.values())

    def decide(self, ask: Ask[T]) -> Verdict[T]:
        """The rule's verdict on ``ask``; one that goes on is counted in progress."""
        runs = self._runs.get(ask.task_id, {})
        mine = runs.get(ask.instant)
        if mine is not None:  # another attempt of a run in progress: never its own overlap
            mine.out += 1
            mine.execution_id = ask.execution_id
            return Verdict("go")
        others = sorted(runs)
        if not others or ask.rule == "allow_all":
            self._start(ask)
            return Verdict("go")
        running = others[0].isoformat()
        if ask.continued or ask.owed:
            self._hold(ask)
            why = "an attempt of an earlier run" if ask.continued else ask.owed
            return Verdict("hold", f"overlap: {why}, held while run {running} is in progress")
        if ask.rule == "skip":
            return Verdict("skip", f"overlap: skipped, run {running} still running")
        held = self._held.get(ask.task_id, deque())
        if ask.rule == "buffer_one":
            if any(not a.owed and not a.continued for a in held):
                return Verdict("skip", BUFFER_FULL)
            self._hold(ask)
            return Verdict("hold", f"overlap: buffered (buffer_one) while run {running} runs")
        if ask.rule == "buffer_all":
            self._hold(ask)
            return Verdict("hold", f"overlap: buffered (buffer_all) while run {running} runs")
        # cancel_other: the newest waits for the runs in progress to end, cancelled
        dropped = tuple(a for a in held if not a.owed and not a.continued)
        if dropped:
            self._held[ask.task_id] = deque(a for a in held if a.owed or a.continued)
        self._hold(ask)
        to_cancel = tuple(i for i in others if not runs[i].cancelling)
        for instant in to_cancel:
            runs[instant].cancelling = True
        return Verdict(
            "cancel",
            f"overlap: cancel_other: held while run {running} is cancelled",
            cancel=to_cancel,
            dropped=dropped,
        )

    def attempt_ended(self, task_id: str, instant: datetime, *, final: bool) -> list[Ask[T]]:
        """An attempt of the run ended (``final``: the run ended): the held fire that goes on
        now, if any (counted in progress)."""
        runs = self._runs.get(task_id)
        run = None if runs is None else runs.get(instant)
        if run is not None:
            run.out = max(0, run.out - 1)
        if not final:
            return []
        return self.forget(task_id, instant)

    def forget(self, task_id: str, instant: datetime) -> list[Ask[T]]:
        """The run ended (whether the book knew it or not): the oldest held fire of its task goes
        on once no run of the task is in progress (then counted in progress)."""
        runs = self._runs.get(task_id)
        if runs is not None:
            runs.pop(instant, None)
            if not runs:
                del self._runs[task_id]
        if task_id in self._runs:
            return []
        held = self._held.get(task_id)
        if not held:
            return []
        ask = held.popleft()
        if not held:
            del self._held[task_id]
        self._start(ask)
        return [ask]

    def out_attempts(self) -> dict[str, tuple[str, datetime]]:
        """The latest attempt of each run with attempts out: execution id -> (task, instant)."""
        return {
            run.execution_id: (task_id, instant)
            for task_id, runs in self._runs.items()
            for instant, run in runs.items()
            if run.out
        }

    def lost(self, task_id: str, instant: datetime) -> None:
        """The run's attempts ended without a result reaching here: none is out any more (the
        run is idle: whether it ended is looked up before its task's next fire is judged)."""
        run = self._runs.get(task_id, {}).get(instant)
        if run is not None:
            run.out = 0

    def _start(self, ask: Ask[T]) -> None:
        self._runs.setdefault(ask.task_id, {})[ask.instant] = _Run(ask.execution_id)

    def _hold(self, ask: Ask[T]) -> None:
        self._held.setdefault(ask.task_id, deque()).append(ask)


@dataclass(frozen=True, slots=True)
class Limits:
    """At most ``categories[c]`` attempts of category ``c`` at once (absent: no limit) and at
    most ``total`` of all (None: no limit)."""

    categories: Mapping[str, int] = field(default_factory=dict)
    total: int | None = None

    @property
    def any(self) -> bool:
        return bool(self.categories) or self.total is not None


@dataclass(slots=True)
class _Slot:
    category: str
    key: str | None


class SlotBook(Generic[T]):
    """Attempts out per category, in total and per key; asks over a limit wait in order."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._out: dict[str, _Slot] = {}  # execution id -> its slot
        self._per_category: dict[str, int] = {}
        self._total = 0
        self._per_key: dict[str, int] = {}  # attempts out and asks past the key's wait
        self._key_waiting: dict[str, deque[Ask[T]]] = {}
        self._waiting: dict[str, list[tuple[int, Ask[T]]]] = {}  # category -> heap by arrival
        self._arrivals = itertools.count()
        self._sequence: dict[str, int] = {}  # execution id -> its arrival, kept past the key

    def __len__(self) -> int:
        """Attempts out."""
        return len(self._out)

    def out_ids(self) -> list[str]:
        """The execution ids of the attempts out."""
        return list(self._out)

    def waiting(self) -> int:
        return sum(len(w) for w in self._key_waiting.values()) + sum(
            len(w) for w in self._waiting.values()
        )

    def out(self, category: str | None = None, key: str | None = None) -> int:
        if key is not None:
            return sum(1 for slot in self._out.values() if slot.key == key)
        if category is not None:
            return self._per_category.get(category, 0)
        return self._total

    def needed(self, ask: Ask[T]) -> bool:
        """Whether ``ask`` is counted at all (a limit applies to it)."""
        return (
            ask.key is not None
            or self.limits.total is not None
            or (ask.category in self.limits.categories)
        )

    def take(self, ask: Ask[T]) -> tuple[bool, str]:
        """(True, "") if ``ask`` goes on now, holding its slots; else (False, why it waits)."""
        if ask.execution_id in self._out:
            return True, ""  # dispatched again while out: its slot is held already
        self._sequence[ask.execution_id] = next(self._arrivals)
        if ask.key is not None:
            if self._per_key.get(ask.key, 0) >= ask.key_limit:
                self._key_waiting.setdefault(ask.key, deque()).append(ask)
                return False, (
                    f"concurrency: key {ask.key} at its limit of {ask.key_limit} runs at once"
                )
            self._per_key[ask.key] = self._per_key.get(ask.key, 0) + 1
        why = self._full(ask.category)
        if why is None and not self._waiting.get(ask.category):
            self._occupy(ask)
            return True, ""
        self._wait(ask)
        return False, why or f"concurrency: fires of category {ask.category} wait before it"

    def release(self, execution_id: str) -> list[Ask[T]]:
        """The attempt ended: its slots are free; the asks that go on now, in order."""
        slot = self._out.pop(execution_id, None)
        self._sequence.pop(execution_id, None)
        if slot is None:
            return []
        self._per_category[slot.category] -= 1
        self._total -= 1
        if slot.key is not None:
            self._per_key[slot.key] -= 1
            if not self._per_key[slot.key]:
                del self._per_key[slot.key]
            self._pass_key(slot.key)
        return self._drain()

    # ------------------------------------------------------------ inside

    def _full(self, category: str) -> str | None:
        limit = self.limits.categories.get(category)
        if limit is not None and self._per_category.get(category, 0) >= limit:
            return f"concurrency: category {category} at its limit of {limit} runs at once"
        total = self.limits.total
        if total is not None and self._total >= total:
            return f"concurrency: {total} runs at once (scheduler.max_concurrent_tasks)"
        return None

    def _occupy(self, ask: Ask[T]) -> None:
        self._out[ask.execution_id] = _Slot(ask.category, ask.key)
        self._per_category[ask.category] = self._per_category.get(ask.category, 0) + 1
        self._total += 1

    def _wait(self, ask: Ask[T]) -> None:
        heap = self._waiting.setdefault(ask.category, [])
        heapq.heappush(heap, (self._sequence[ask.execution_id], ask))

    def _pass_key(self, key: str) -> None:
        """The oldest ask waiting for ``key`` passes it, if the key has room now."""
        waiting = self._key_waiting.get(key)
        while waiting and self._per_key.get(key, 0) < waiting[0].key_limit:
            ask = waiting.popleft()
            self._per_key[key] = self._per_key.get(key, 0) + 1
            self._wait(ask)
        if waiting is not None and not waiting:
            del self._key_waiting[key]

    def _drain(self) -> list[Ask[T]]:
        """Asks waiting for a category or the total that go on now: the oldest first, in each
        category's order."""
        gone: list[Ask[T]] = []
        while True:
            best: tuple[int, str] | None = None
            for category, heap in self._waiting.items():
                if heap and self._full(category) is None:
                    head = heap[0][0]
                    if best is None or head < best[0]:
                        best = (head, category)
            if best is None:
                return gone
            heap = self._waiting[best[1]]
            _, ask = heapq.heappop(heap)
            if not heap:
                del self._waiting[best[1]]
            self._occupy(ask)
            gone.append(ask)
