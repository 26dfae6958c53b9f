"""Suspended runs waiting for their wake: one heap of ``(wake_at, run_key)`` and ONE timer of the
scheduler's clock, set for the earliest; no task, no timer per sleeping run.

A wake is armed from a suspended attempt's result (``wake_now``: at once), from the store's
suspended runs at a takeover, and from a resume. When it is due, the store is asked to wake the
run (``wake_run``): the store re-checks the wake condition (paused, cancelled, woken already,
not due: nothing happens), so a wake fires at most once whoever asks. The woken run is fired
again as a new attempt of its fire (trigger ``wake``), which replays its kept steps.

A run whose task is deleted is ended ``failed``; one whose task is disabled still wakes (it is
the run of a fire made while it was enabled, as a retry is).
"""

from __future__ import annotations

import functools
import heapq
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime

from actors.scheduling import definitions
from actors.scheduling.background import Background
from actors.scheduling.definitions import CompiledTask
from actors.scheduling.firing import Firing
from actors.scheduling.owed import Owed
from actors.scheduling.protocol import RunResult
from actors.scheduling.roster import Roster
from actors.storing.client import StoreClient
from config.sections import SchedulerSettings
from scheduler import Clock, Timer
from store.errors import InvalidValue, NotFound
from store.records import RunRecord, run_key

SUSPENDED_PAGE = 500  # suspended runs read per request at a takeover


class Sleepers:
    def __init__(
        self,
        *,
        store: StoreClient,
        owed: Owed,
        roster: Roster,
        firing: Firing,
        counters: Counter[str],
        clock: Clock,
        settings: SchedulerSettings,
        background: Background,
        log: logging.Logger,
    ) -> None:
        self._store = store
        self._owed = owed
        self._roster = roster
        self._firing = firing
        self._counters = counters
        self._clock = clock
        self._settings = settings
        self._background = background
        self._log = log
        self._heap: list[tuple[datetime, str]] = []
        self._armed: dict[str, datetime] = {}  # run key -> its wake (heap entries not here: stale)
        self._timer: Timer | None = None
        self._timer_at: datetime | None = None

    def __len__(self) -> int:
        return len(self._armed)

    def __contains__(self, key: object) -> bool:
        return key in self._armed

    def wake_at(self, key: str) -> datetime | None:
        """When the run ``key`` is armed to wake (None: it is not)."""
        return self._armed.get(key)

    # ------------------------------------------------------------ arming

    def arm(self, key: str, wake_at: datetime) -> None:
        """Wake the run ``key`` at ``wake_at`` (at once if it has passed); a later arm of the same
        run replaces this one."""
        if self._armed.get(key) == wake_at:
            return
        self._armed[key] = wake_at
        heapq.heappush(self._heap, (wake_at, key))
        if self._timer_at is None or wake_at < self._timer_at:
            self._set_timer()

    def drop(self, key: str) -> None:
        """Forget the run's wake (cancelled, paused); its heap entry goes stale."""
        self._armed.pop(key, None)

    def wake_now(self, key: str) -> None:
        """Ask the store to wake the run now, beside the caller (the store re-checks)."""
        self._armed.pop(key, None)
        self._background.spawn(self.wake(key))

    def cancel_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        self._heap.clear()
        self._armed.clear()

    async def rearm(self) -> None:
        """A takeover: arm every suspended run the store holds (paused ones are held: a resume
        arms them), and wake at once those that may be due without a timer (a resumed paused
        suspension, a waiting run with signals in its inbox)."""
        after: str | None = None
        while True:
            page = await self._store.suspended_runs(after=after, limit=SUSPENDED_PAGE)
            for row in page.items:
                self.follow(row)
            after = page.next_cursor
            if after is None:
                return

    def suspended(self, result: RunResult) -> None:
        """An attempt suspended its run: wake it when the store said (at once if it was due)."""
        key = run_key(result.task_id, result.scheduled_at)
        self._counters["suspended"] += 1
        if result.wake_now:
            self.wake_now(key)
        elif result.wake_at is not None:
            self.arm(key, result.wake_at)

    def follow(self, row: RunRecord) -> None:
        """Arm the wake of a run the store returned (suspend, resume, takeover): none while it
        is paused or not suspended; at once when it may be due without waiting for a time."""
        if not row.suspended or row.paused:
            self.drop(row.run_key)
            return
        if (row.wake_at is None and row.state == "sleeping") or row.signals > 0:
            self.wake_now(row.run_key)
        if row.wake_at is not None:
            self.arm(row.run_key, row.wake_at)

    # ------------------------------------------------------------ the timer

    def _set_timer(self) -> None:
        """One timer, for the earliest wake still armed."""
        while self._heap and self._armed.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # stale
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None
        if not self._heap:
            return
        self._timer_at = earliest = self._heap[0][0]
        delay = max(0.0, (earliest - self._clock.wall()).total_seconds())
        self._timer = self._clock.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self._clock.wall()
        while self._heap and self._heap[0][0] <= now:
            wake_at, key = heapq.heappop(self._heap)
            if self._armed.get(key) == wake_at:
                del self._armed[key]
                self._background.spawn(self.wake(key))
        self._set_timer()

    # ------------------------------------------------------------ waking

    async def wake(self, key: str) -> None:
        """Wake the run in the store if it is due, then fire its next attempt."""
        now = self._clock.wall()
        row = await self._owed(
            f"waking run {key}", functools.partial(self._store.wake_run, key, now=now)
        )
        if row is None:
            return  # not suspended, paused, not due, or woken by another
        await self.fire(row)

    async def fire(self, row: RunRecord) -> None:
        """Fire the attempt of a run the store just woke (``row``: state ``running``)."""
        task = await self._task(row)
        if task is None:
            return
        self._counters["wakes"] += 1
        await self._firing.fire(
            task, row.scheduled_at, attempt=row.attempt, reason="wake", wakes=row.wakes
        )

    async def _task(self, row: RunRecord) -> CompiledTask | None:
        task = self._roster.get(row.task_id)
        if task is not None:
            return task
        try:
            return definitions.compile_task(await self._store.get_task(row.task_id), self._settings)
        except (NotFound, InvalidValue) as exc:
            reason = f"not woken: its task cannot be run ({exc})"
            self._log.warning("run %s %s", row.run_key, reason)
            await self._end(row.run_key, reason)
            return None

    async def _end(self, key: str, reason: str) -> None:
        write: Callable[[], Awaitable[object]] = functools.partial(
            self._store.finish_run, key, "failed", reason=reason, now=self._clock.wall()
        )
        await self._owed(f"ending run {key}", write)
