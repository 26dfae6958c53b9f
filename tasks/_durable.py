"""The machinery behind ``ctx.sleep``, ``ctx.wait_signal``, ``ctx.handle_signals``,
``ctx.spawn``/``ChildRun.result``, ``ctx.cancel_run`` and ``ctx.pause`` (``tasks.context``
documents them): one per run, over the run's steps (``tasks.steps``) and signals
(``tasks.signals``).

What a run waits for is kept as steps, keyed by names: a sleep's wake instant (``sleep:<name>``),
a wait's signal (``signal:<name>#<k>``: the k-th wait for ``name`` in the run) and its deadline
(``signal:<name>#<k>:deadline``), a handled signal (``handled:<seq>``), a started child run
(``spawn:<key>``) and its outcome (``signal:child:<key>#1``). A replay finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from scheduler.clock import Clock, sleep, within
from scheduler.errors import TimedOut
from tasks.children import (
    ChildRun,
    Spawner,
    check_child_key,
    check_on_parent_cancel,
    child_config,
    child_outcome,
    child_signal,
    spawned,
    task_class_key,
)
from tasks.errors import (
    ChildFailed,
    RunCancelled,
    SignalTimedOut,
    Suspended,
    TaskCancelled,
    TaskUsageError,
)
from tasks.signals import (
    MAX_SIGNAL_NAME_CHARS,
    RunSignals,
    Signal,
    SignalInbox,
    check_signal_name,
    handlers_of,
)
from tasks.steps import RunSteps, RunSync, StepJournal, StoredStep
from tasks.updates import update_handlers

T = TypeVar("T")
_DEFAULT_SLEEP = re.compile(r"sleep-\d+")


def delay_s(value: object, what: str) -> float:
    """Seconds of a delay given as a timedelta or a number (>= 0, finite); else TaskUsageError."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TaskUsageError(f"{what} is a timedelta or a number of seconds, not {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise TaskUsageError(f"{what} is a finite number of seconds >= 0, not {seconds:g}")
    return seconds


def aware(value: object, what: str) -> datetime:
    """``value`` in UTC if it is an aware datetime; else TaskUsageError."""
    if not isinstance(value, datetime):
        raise TaskUsageError(f"{what} is an aware datetime, not {value!r}")
    if value.utcoffset() is None:
        raise TaskUsageError(
            f"{what} is an aware datetime (with a timezone), not the naive {value.isoformat()}"
        )
    return value.astimezone(UTC)


def _instant(text: Any, ident: str) -> datetime:
    try:
        return aware(datetime.fromisoformat(text), f"the kept instant of step {ident!r}")
    except (TypeError, ValueError) as exc:
        raise TaskUsageError(f"step {ident!r} does not hold an instant: {text!r}") from exc


class _Paused(Exception):
    """A wait in place was interrupted by ``pause`` (never leaves this module)."""


def _quiet(task: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of work no longer awaited (no "never retrieved" warning)."""
    if not task.cancelled():
        task.exception()


class DurableRun:
    """One run's sleeps, signal waits, handled signals, cancellation and pause."""

    def __init__(
        self,
        *,
        journal: StepJournal,
        inbox: SignalInbox | None,
        clock: Clock,
        run_sync: RunSync,
        suspend_after_s: float,
        spawner: Spawner | None = None,
    ) -> None:
        self.clock = clock
        self.spawner = spawner
        self.suspend_after_s = suspend_after_s
        self.signals = RunSignals(inbox)
        self.steps = RunSteps(journal, clock, run_sync, guard=self.guard, gate=self.gate)
        self.cancel_reason: str | None = None  # set once: the run is cancelled
        self.pause_requested = False
        self.ended = False
        self.used = False  # slept, waited, handled signals, or was cancelled or paused
        self._stoppers: set[asyncio.Future[None]] = set()
        self._pausers: set[asyncio.Future[None]] = set()  # stop the waits in place on pause
        self._children: dict[str, asyncio.Lock] = {}  # child key -> one wait for it at once
        self._unnamed_sleeps = 0
        self._waits: dict[str, int] = {}  # name -> waits asked for so far
        self._taking: dict[str, set[int]] = {}  # name -> seqs a wait is recording now
        self._handlers: dict[str, str] = {}  # signal name -> method of the task that handles it
        self._handling = asyncio.Lock()

    # ------------------------------------------------------------ control

    def cancel(self, reason: str) -> bool:
        """Cancel the run (the first reason stays); False if it was cancelled already."""
        if self.cancel_reason is not None:
            return False
        self.used = True
        self.cancel_reason = reason or "cancelled"
        for stop in tuple(self._stoppers):
            if not stop.done():
                stop.set_result(None)
        self.signals.interrupt()
        return True

    def end(self) -> None:
        """The attempt is over: work still running for it (a step or wait awaited by a task the
        attempt left behind, say a ``gather``'s sibling) is cancelled and no longer awaited."""
        self.ended = True
        for stop in tuple(self._stoppers):
            if not stop.done():
                stop.set_result(None)
        self.signals.interrupt()

    def pause(self) -> None:
        """Pause the run: a wait in place (a sleep, a signal or child wait) ends now with
        Suspended(paused=True); otherwise the next boundary raises it."""
        self.used = True
        self.pause_requested = True
        for stop in tuple(self._pausers):
            if not stop.done():
                stop.set_result(None)

    def resume(self) -> None:
        self.pause_requested = False

    def check_cancelled(self) -> None:
        if self.cancel_reason is not None:
            raise RunCancelled(self.cancel_reason)
        if self.ended:
            raise TaskCancelled("the attempt ended")

    def gate(self) -> None:
        """The boundary before new work: RunCancelled, or Suspended if the run was paused."""
        self.check_cancelled()
        if self.pause_requested:
            raise Suspended(wake_at=None, waiting=None, paused=True)

    async def guard(self, make: Callable[[], Awaitable[T]], *, pausable: bool = False) -> T:
        """``await make()``, unless the run is (or gets) cancelled: then the work is cancelled
        and no longer awaited (a thread is not stopped) and RunCancelled raised at once.
        ``pausable`` (a wait in place): a pause stops it too, raising ``_Paused``."""
        self.check_cancelled()
        if pausable and self.pause_requested:
            raise _Paused
        work = asyncio.ensure_future(make())
        stop: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._stoppers.add(stop)
        if pausable:
            self._pausers.add(stop)
        try:
            await asyncio.wait((work, stop), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            work.cancel()
            work.add_done_callback(_quiet)
            raise
        finally:
            self._stoppers.discard(stop)
            self._pausers.discard(stop)
        if work.done():
            return work.result()
        work.cancel()
        work.add_done_callback(_quiet)
        self.check_cancelled()
        if pausable and self.pause_requested:
            raise _Paused
        raise AssertionError("stopped, yet neither cancelled nor ended")  # pragma: no cover

    # ------------------------------------------------------------ sleeps

    def sleep_id(self, name: str | None) -> str:
        if name is None:
            self._unnamed_sleeps += 1
            return f"sleep:sleep-{self._unnamed_sleeps}"
        if (
            not isinstance(name, str)
            or not name
            or len(name) > MAX_SIGNAL_NAME_CHARS
            or not name.isprintable()
        ):
            shown = name[:40] if isinstance(name, str) else name
            raise TaskUsageError(
                f"a sleep's name is printable text of 1..{MAX_SIGNAL_NAME_CHARS} characters, "
                f"not {shown!r}"
            )
        if _DEFAULT_SLEEP.fullmatch(name):
            raise TaskUsageError(
                f"sleep name {name!r}: the names sleep-<n> are those of unnamed sleeps"
            )
        return f"sleep:{name}"

    async def sleep(self, ident: str, wake: Callable[[datetime], datetime]) -> None:
        """The sleep ``ident``: its kept wake instant, or ``wake(now)`` kept as it."""
        self.check_cancelled()
        self.used = True
        kept = await self.steps.recall(ident)
        if kept is not None:
            wake_at = _instant(kept.result, ident)
            if wake_at <= self.clock.wall():
                return
        self.gate()
        if kept is None:
            text = wake(self.clock.wall()).isoformat()
            wake_at = _instant(await self.steps.keep(ident, text), ident)
        left_s = (wake_at - self.clock.wall()).total_seconds()
        if left_s <= 0:
            return
        if left_s < self.suspend_after_s:
            try:
                await self.guard(partial(sleep, self.clock, left_s), pausable=True)
            except _Paused:
                raise Suspended(wake_at=wake_at, paused=True) from None
            return
        raise Suspended(wake_at=wake_at)

    # ------------------------------------------------------------ signals

    async def wait_signal(self, name: str, timeout_s: float | None) -> Any:
        name = check_signal_name(name)
        if name in self._handlers:
            raise TaskUsageError(
                f"signal {name!r} is handled by {self._handlers[name]}() and cannot be waited for"
            )
        self.check_cancelled()
        self.used = True
        k = self._waits[name] = self._waits.get(name, 0) + 1
        return await self._wait(name, f"signal:{name}#{k}", timeout_s)

    async def _wait(self, name: str, ident: str, timeout_s: float | None) -> Any:
        """The payload of the signal ``name`` kept as the step ``ident`` (taken now if it is
        not kept yet: waiting in place, then suspending)."""
        deadline_id = f"{ident}:deadline"
        kept = await self.steps.recall(ident)
        kept_deadline = await self.steps.recall(deadline_id)
        deadline = None if kept_deadline is None else _instant(kept_deadline.result, deadline_id)
        if kept is not None:
            return self._outcome(name, ident, kept.result, deadline)
        self.gate()
        await self.signals.load()
        in_place_until: float | None = None
        while True:
            changed = self.signals.changed()  # taken before looking: no push is missed
            taken = await self._take(name, ident)
            if taken is not None:
                return self._outcome(name, ident, taken, deadline)
            now = self.clock.wall()
            if timeout_s is not None and deadline is None:
                text = (now + timedelta(seconds=timeout_s)).isoformat()
                deadline = _instant(await self.steps.keep(deadline_id, text), deadline_id)
            if deadline is not None and deadline <= now:
                stored = await self.steps.keep(ident, {"timeout": True})
                return self._outcome(name, ident, stored, deadline)
            if in_place_until is None:
                budget_s = self.suspend_after_s
                if deadline is not None:
                    budget_s = min(budget_s, (deadline - now).total_seconds())
                in_place_until = self.clock.monotonic() + budget_s
            left_s = in_place_until - self.clock.monotonic()
            if left_s <= 0:
                if deadline is not None and deadline <= self.clock.wall():
                    continue  # timed out in place: stored above on the next round
                raise Suspended(wake_at=deadline, waiting=name, consumed=await self._consumed(name))
            try:
                await self.guard(partial(self._wait_for, changed, left_s), pausable=True)
            except _Paused:
                raise Suspended(
                    wake_at=deadline,
                    waiting=name,
                    consumed=await self._consumed(name),
                    paused=True,
                ) from None

    async def _wait_for(self, event: asyncio.Event, seconds: float) -> None:
        """Until ``event`` is set or ``seconds`` have passed on the run's clock."""
        with contextlib.suppress(TimedOut):
            await within(self.clock, seconds, event.wait())

    async def _take(self, name: str, ident: str) -> Any:
        """Record the first signal ``name`` no wait of the run took as the step ``ident``;
        its kept result, or None if there is no such signal yet."""
        kept = await self.steps.kept_steps()
        taken = set(self._taking.setdefault(name, set()))
        taken.update(seq for seq, _ in self._consuming(name, kept))
        for signal in self.signals.named(name):
            if signal.seq in taken:
                continue
            self._taking[name].add(signal.seq)  # claimed at once: a concurrent wait skips it
            try:
                return await self.steps.keep(ident, {"seq": signal.seq, "payload": signal.payload})
            finally:
                self._taking[name].discard(signal.seq)
        return None

    async def _consumed(self, name: str) -> int:
        return sum(1 for _ in self._consuming(name, await self.steps.kept_steps()))

    @staticmethod
    def _consuming(name: str, kept: dict[str, StoredStep]) -> list[tuple[int, str]]:
        """(seq, step id) of the kept steps ``signal:<name>#<k>`` that took a signal."""
        found = []
        for ident, step in kept.items():
            if not ident.startswith("signal:"):
                continue
            base, _, k = ident[len("signal:") :].rpartition("#")
            if base != name or not k.isdigit() or not isinstance(step.result, dict):
                continue
            seq = step.result.get("seq")
            if isinstance(seq, int) and not isinstance(seq, bool):
                found.append((seq, ident))
        return found

    @staticmethod
    def _outcome(name: str, ident: str, result: Any, deadline: datetime | None) -> Any:
        if isinstance(result, dict) and result.get("timeout") is True:
            raise SignalTimedOut(name, deadline)
        if not isinstance(result, dict) or "seq" not in result:
            raise TaskUsageError(f"step {ident!r} does not hold a signal: {result!r}")
        return result.get("payload")

    # ------------------------------------------------------------ handlers

    def know_handlers(self, task: object) -> dict[str, str]:
        """``{signal name: method}`` of ``task``: its signal handlers, and its updates as the
        handlers of their signals ``update:<name>``."""
        self._handlers = handlers_of(type(task)) | update_handlers(type(task))
        return self._handlers

    async def handle_signals(self, task: object, ctx: object) -> int:
        """Run ``task``'s handler for each signal of a handled name not handled yet in this
        run, in seq order, each as the step ``handled:<seq>``; how many ran now."""
        handlers = self.know_handlers(task)
        if not handlers:
            return 0  # the inbox is not read for a task without handlers
        self.used = True
        await self.signals.load()
        ran = 0
        async with self._handling:  # one pass at a time: seq order across pushes
            for signal in self.signals.ordered():
                method = handlers.get(signal.name)
                if method is None:
                    continue
                ident = f"handled:{signal.seq}"
                if await self.steps.recall(ident) is not None:
                    continue
                handler = getattr(task, method)
                await self.steps.step(
                    ident, handler, (ctx, signal.payload), retry=None, timeout_s=None, gated=False
                )
                ran += 1
        return ran

    async def handle_update(self, task: object, ctx: object, signal: Signal) -> Any:
        """An accepted update, kept in the inbox as ``signal`` (``update:<name>``): delivered,
        handled (as ``handled:<seq>``, in seq order with the run's other handled signals), and
        its handler's kept result returned (the same on a second ask: it runs once)."""
        self.signals.deliver(signal)
        await self.handle_signals(task, ctx)
        kept = await self.steps.recall(f"handled:{signal.seq}")
        if kept is None:
            raise TaskUsageError(f"update signal {signal.seq} ({signal.name!r}) was not handled")
        return kept.result

    # ------------------------------------------------------------ child runs

    async def spawn(
        self, task_class: object, options: object, *, key: str, on_parent_cancel: str
    ) -> ChildRun:
        """The child run ``key`` of this run: started once, as the step ``spawn:<key>``."""
        key = check_child_key(key)
        class_key = task_class_key(task_class)
        config = child_config(options)
        on_parent_cancel = check_on_parent_cancel(on_parent_cancel)
        self.check_cancelled()
        self.used = True

        async def start() -> dict[str, Any]:
            if self.spawner is None:
                raise TaskUsageError("this context cannot spawn (the executor gave it no spawner)")
            reply = await self.spawner.spawn(
                key=key, task_class=class_key, config=config, on_parent_cancel=on_parent_cancel
            )
            task_id, run = spawned(key, reply)
            return {"task_id": task_id, "run": run}

        kept = await self.steps.step(f"spawn:{key}", start, (), retry=None, timeout_s=None)
        task_id, run = spawned(key, kept)
        return ChildRun(key=key, task_id=task_id, run=run, _result_of=self.child_result)

    async def child_result(self, key: str) -> dict[str, Any]:
        """The result map of the child ``key`` (its signal ``child:<key>``, kept as the step
        ``signal:child:<key>#1``); ChildFailed if it did not succeed."""
        key = check_child_key(key)
        self.check_cancelled()
        self.used = True
        async with self._children.setdefault(key, asyncio.Lock()):  # one taker per child
            payload = await self._wait(child_signal(key), f"signal:{child_signal(key)}#1", None)
        return child_outcome(key, payload)

    async def gather(self, handles: tuple[ChildRun, ...]) -> list[dict[str, Any]]:
        """Every child's result, in order, once all of them are there; the first failure (in
        the handles' order) raised after all are in."""
        for handle in handles:
            if not isinstance(handle, ChildRun):
                raise TaskUsageError(f"gather takes ChildRun handles, not {handle!r}")
        outcomes = await asyncio.gather(
            *(handle.result() for handle in handles), return_exceptions=True
        )
        failure: BaseException | None = None
        for outcome in outcomes:  # the run's own end (suspend, cancel, a bug) before a child's
            if isinstance(outcome, BaseException) and not isinstance(outcome, ChildFailed):
                raise outcome
            if failure is None and isinstance(outcome, ChildFailed):
                failure = outcome
        if failure is not None:
            raise failure
        return [outcome for outcome in outcomes if not isinstance(outcome, BaseException)]
