"""What a running task is given: its options, a logger, the clock, cancellation, progress,
checkpointed steps (``tasks.steps``), and helpers that keep blocking work off the event loop.
The executor builds one per run.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar, TypeVarTuple

from scheduler.clock import Clock
from tasks._durable import DurableRun, aware, delay_s
from tasks.children import ChildRun, Spawner
from tasks.errors import RunCancelled, TaskCancelled, TaskUsageError
from tasks.options import TaskOptions
from tasks.services import TaskServices
from tasks.signals import RunSignals, Signal, SignalInbox
from tasks.steps import MemoryJournal, StepJournal, StepRetry, step_id

__all__ = [
    "ProgressCallback",
    "RunCancelled",
    "RunLog",
    "StepRetry",
    "TaskCancelled",
    "TaskContext",
]  # TaskCancelled, RunCancelled: check_cancelled raises them

OptionsT_co = TypeVar("OptionsT_co", bound=TaskOptions, covariant=True)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")
ProgressCallback = Callable[[float, str], Awaitable[None]]
MAX_NOTE_CHARS = 500
MAX_LOG_LINES = 200  # lines a run keeps (the store's bound): the first ones, then a count
MAX_LOG_LINE_CHARS = 500

_logger = logging.getLogger("taskbus.task")


async def _no_progress(fraction: float, note: str) -> None:
    return None


class RunLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.log``: a logger whose lines name the task and the run (``<task id> [<execution
    id>] message``, and ``task_id``/``execution_id`` on each record), and which keeps what the run
    logged at INFO and above (DEBUG too when enabled), stamped by the run's clock: at most
    MAX_LOG_LINES lines of MAX_LOG_LINE_CHARS characters, the last of them saying how many more
    were not kept. The executor stores them with the run's outcome (``taskbus task logs
    <task> --run <execution id>``).
    """

    def __init__(
        self, logger: logging.Logger, *, task_id: str, execution_id: str, clock: Clock
    ) -> None:
        super().__init__(logger, {"task_id": task_id, "execution_id": execution_id})
        self._prefix = f"{task_id} [{execution_id}]"
        self._clock = clock
        self._kept: list[tuple[datetime, str, str]] = []
        self._dropped = 0

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), **(self.extra or {})}
        return f"{self._prefix} {msg}", kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if level >= logging.INFO or self.isEnabledFor(level):
            self._keep(level, msg, args, kwargs.get("exc_info"))
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 1  # the caller's line, not this
        super().log(level, msg, *args, **kwargs)

    def _keep(self, level: int, msg: Any, args: tuple[Any, ...], exc_info: Any) -> None:
        if len(self._kept) >= MAX_LOG_LINES - 1:
            self._dropped += 1
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args!r}"
        if exc_info:
            error = sys.exc_info()[1] if exc_info is True else exc_info
            if isinstance(error, tuple):
                error = error[1]
            if isinstance(error, BaseException):
                text += f" ({type(error).__name__}: {error})"
        text = text if len(text) <= MAX_LOG_LINE_CHARS else text[: MAX_LOG_LINE_CHARS - 1] + "…"
        self._kept.append((self._clock.wall(), logging.getLevelName(level), text))

    def lines(self) -> tuple[tuple[datetime, str, str], ...]:
        """What the run logged: (instant, level name, text) each, oldest first."""
        if not self._dropped:
            return tuple(self._kept)
        last = self._kept[-1][0] if self._kept else self._clock.wall()
        note = f"{self._dropped} more lines not kept (at most {MAX_LOG_LINES} per run)"
        return (*self._kept, (last, "WARNING", note))


class TaskContext(Generic[OptionsT_co]):
    """One run's view of the world. Attributes are read-only by convention.

    Injected by the executor (defaults suit tests): ``cancelled``, the event it sets on timeout
    or shutdown (``cancel(reason)`` sets it with a reason); ``on_progress`` publishes a status
    event; ``idle_probe`` says whether the host is idle (default: never idle, the safe answer);
    ``loop_lag_s`` is the executor's measured event-loop lag in seconds (default 0);
    ``threads`` (default: the loop's shared executor) and ``processes`` (default none:
    ``run_in_process`` then raises) run blocking and heavy work; ``steps`` keeps the run's
    steps (default: in memory, for this context only); ``signals`` is the run's inbox (default:
    none, only signals pushed with ``deliver``); a sleep or a signal wait that has more than
    ``suspend_after_s`` seconds to go suspends the run instead of waiting in place;
    ``spawner`` starts child runs (default none: ``spawn`` then raises).
    """

    def __init__(
        self,
        *,
        task_id: str,
        execution_id: str,
        scheduled_at: datetime,
        attempt: int,
        options: OptionsT_co,
        services: TaskServices,
        clock: Clock,
        logger: logging.Logger | None = None,
        cancelled: asyncio.Event | None = None,
        on_progress: ProgressCallback | None = None,
        idle_probe: Callable[[], bool] | None = None,
        loop_lag_s: Callable[[], float] | None = None,
        threads: ThreadPoolExecutor | None = None,
        processes: ProcessPoolExecutor | None = None,
        data_dir: Path | None = None,
        steps: StepJournal | None = None,
        signals: SignalInbox | None = None,
        suspend_after_s: float = 1.0,
        spawner: Spawner | None = None,
    ) -> None:
        if scheduled_at.utcoffset() is None:
            raise TaskUsageError(f"scheduled_at must be aware, not {scheduled_at.isoformat()}")
        if (
            not isinstance(suspend_after_s, int | float)
            or isinstance(suspend_after_s, bool)
            or not math.isfinite(suspend_after_s)
            or suspend_after_s < 0
        ):
            raise TaskUsageError(f"suspend_after_s is a number >= 0, not {suspend_after_s!r}")
        self.task_id = task_id
        self.execution_id = execution_id
        self.scheduled_at = scheduled_at
        self.attempt = attempt
        self._options = options
        self.services = services
        self.clock = clock
        self.data_dir = data_dir
        self.log = RunLog(
            logger or _logger, task_id=task_id, execution_id=execution_id, clock=clock
        )
        self.cancelled = cancelled if cancelled is not None else asyncio.Event()
        self._cancel_reason = ""
        self._progress = on_progress or _no_progress
        self._idle_probe = idle_probe
        self._loop_lag = loop_lag_s
        self._thread_pool = threads
        self._process_pool = processes
        self._durable = DurableRun(
            journal=steps or MemoryJournal(),
            inbox=signals,
            clock=clock,
            run_sync=self.run_in_thread,
            suspend_after_s=float(suspend_after_s),
            spawner=spawner,
        )
        self._steps = self._durable.steps

    @property
    def options(self) -> OptionsT_co:
        return self._options

    # ------------------------------------------------------------ cancellation

    def cancel(self, reason: str) -> None:
        """For the executor: ask the task to stop (timeout, shutdown); the first reason stays."""
        if not self.cancelled.is_set():
            self._cancel_reason = reason
            self.cancelled.set()

    @property
    def cancel_reason(self) -> str:
        """Why the run was cancelled ("cancelled" if the event was set without a reason)."""
        if not self.cancelled.is_set():
            return ""
        return self._cancel_reason or "cancelled"

    def check_cancelled(self) -> None:
        """Raise TaskCancelled if the run was cancelled (RunCancelled if the run itself was,
        ``cancel_run``): call it between steps of long work."""
        self._durable.check_cancelled()
        if self.cancelled.is_set():
            raise TaskCancelled(self.cancel_reason)

    def cancel_run(self, reason: str) -> None:
        """For the executor (a ``cancel`` push, ``scheduler.run.cancel``): the run is cancelled
        for good. A running ``ctx.step`` (a coroutine or a thread) is no longer awaited and
        raises RunCancelled at once (a coroutine is cancelled; a thread is not stopped), as do
        sleeps, signal waits, every later step and ``check_cancelled``; ``cancelled`` is set.
        The first reason stays."""
        if self._durable.cancel(reason):
            self.cancel(self._durable.cancel_reason or "cancelled")

    @property
    def run_cancelled(self) -> bool:
        """Whether ``cancel_run`` was called."""
        return self._durable.cancel_reason is not None

    def pause(self) -> None:
        """For the executor (a ``pause`` push): a sleep, signal wait or child wait waiting in
        place now raises ``Suspended(paused=True)`` with its wait (``wake_at``, ``waiting``,
        ``consumed``) as it would have suspended; otherwise the run's next new step, sleep or
        wait raises ``Suspended(wake_at=None, waiting=None, paused=True)``. Either ends the
        attempt (a kept step still returns: the boundary is before new work; a step running
        goes on)."""
        self._durable.pause()

    def end_attempt(self) -> None:
        """For the executor, once ``execute`` returned or raised (Suspended above all): work
        the attempt left running (a step, sleep or wait still awaited by a sibling task of
        a ``gather``) is cancelled and no longer awaited; later calls raise TaskCancelled."""
        self._durable.end()

    def resume(self) -> None:
        """For the executor (a ``resume`` push): undo a ``pause`` not reached yet."""
        self._durable.resume()

    # ------------------------------------------------------------ what the executor measures

    async def progress(self, fraction: float, note: str = "") -> None:
        """Report how far the run is, from 0.0 to 1.0, with an optional short note."""
        if (
            not isinstance(fraction, int | float)
            or isinstance(fraction, bool)
            or not math.isfinite(fraction)
            or not 0.0 <= fraction <= 1.0
        ):
            raise TaskUsageError(f"progress is a number from 0.0 to 1.0, not {fraction!r}")
        if not isinstance(note, str) or len(note) > MAX_NOTE_CHARS:
            raise TaskUsageError(f"a progress note is a str of at most {MAX_NOTE_CHARS} chars")
        await self._progress(float(fraction), note)

    def system_idle(self) -> bool:
        return self._idle_probe() if self._idle_probe is not None else False

    def loop_lag_s(self) -> float:
        return self._loop_lag() if self._loop_lag is not None else 0.0

    # ------------------------------------------------------------ checkpointed steps

    async def step(
        self,
        name: str,
        fn: Callable[..., Any],
        *args: Any,
        key: str | int | None = None,
        retry: StepRetry | None = None,
        timeout_s: float | None = None,
    ) -> Any:
        """The result of ``fn(*args)``, run once per run of the fire and stored before it is
        returned: a step the run finished before (an earlier attempt, an executor that died)
        returns its stored result without running ``fn`` (docs/runs.md).

        The step's id is ``name``, or ``name[key]`` for one of a family (a loop's pages); ids,
        never positions, identify steps, so steps awaited together are safe. A coroutine
        function is awaited; any other callable runs in the thread pool (``run_in_thread``).
        The result must be plain data (TaskUsageError, before anything is stored). ``timeout_s``
        bounds each attempt (StepTimedOut, on the run's clock). Without ``retry`` a failure
        propagates and nothing is stored (the task's retry policy runs the run, and the step,
        again); with a :class:`StepRetry`, the step is tried that often, then its error is
        stored and StepFailed raised, now and in every later run of the fire.
        """
        ident = step_id(name, key)
        self._durable.check_cancelled()
        return await self._steps.step(ident, fn, args, retry=retry, timeout_s=timeout_s)

    def check_steps(self) -> None:
        """For the executor, once the run has succeeded: StepsChanged if steps recorded by an
        earlier attempt were never asked for by this one (the run's code changed)."""
        self._steps.check_unchanged()

    # ------------------------------------------------------------ durable sleeps and signals

    async def sleep(self, delay: timedelta | float, *, name: str | None = None) -> None:
        """Wait ``delay`` (a timedelta, or seconds >= 0), across attempts: the wake instant is
        kept as the step ``sleep:<name>`` (docs/runs.md), so a replay of the run waits for the
        same instant. Returns once it has passed; an instant less than ``suspend_after_s`` away
        is waited for in place (on the run's clock); a later one raises Suspended, which ends
        the attempt, and the scheduler wakes the run at that instant with a new attempt that
        replays up to here. ``name`` defaults to ``sleep-<n>``, n counting this run's unnamed
        sleeps from 1: name the sleeps awaited concurrently (their order may change)."""
        seconds = delay_s(delay, "a sleep's delay")
        ident = self._durable.sleep_id(name)
        await self._durable.sleep(ident, lambda now: now + timedelta(seconds=seconds))

    async def sleep_until(self, when: datetime, *, name: str | None = None) -> None:
        """``sleep`` until the aware instant ``when`` (one in the past returns at once)."""
        instant = aware(when, "sleep_until's instant")
        ident = self._durable.sleep_id(name)
        await self._durable.sleep(ident, lambda now: instant)

    async def wait_signal(self, name: str, *, timeout: timedelta | float | None = None) -> Any:
        """The payload of the next signal ``name`` sent to the run that no earlier wait of the
        run took: each signal is taken once per run, in the order they were sent. The k-th
        wait for ``name`` in the run is the step ``signal:<name>#<k>``: a replay returns what
        it took. While no signal has come, it waits in place up to ``suspend_after_s`` (a
        signal pushed to the live run wakes it), then raises Suspended: the run is woken by
        the signal (or its deadline). ``timeout`` (a timedelta or seconds) fixes a deadline,
        kept with the run, after which SignalTimedOut is raised, now and in every replay. A
        name with a ``@signal_handler`` of the task cannot be waited for (TaskUsageError)."""
        timeout_s = None if timeout is None else delay_s(timeout, "wait_signal's timeout")
        return await self._durable.wait_signal(name, timeout_s)

    async def handle_signals(self, task: Any) -> int:
        """For the executor, right after building the context and after each pushed signal:
        run ``task``'s ``@signal_handler`` methods for the run's signals not handled yet, once
        each, in seq order (step ``handled:<seq>``); how many ran. Also tells the context the
        names that cannot be waited for. A task without handlers reads nothing."""
        return await self._durable.handle_signals(task, self)

    async def handle_update(self, task: Any, signal: Signal) -> Any:
        """For the executor, once an update's validator accepted it and it was kept in the
        inbox as ``signal`` (``update:<name>``): deliver it, run the handlers (the update's
        as the step ``handled:<seq>``) and return its handler's kept result."""
        self._durable.used = True
        return await self._durable.handle_update(task, self, signal)

    # ------------------------------------------------------------ child runs

    async def spawn(
        self,
        task_class: type[Any] | str,
        options: Mapping[str, Any] | TaskOptions | None = None,
        *,
        key: str,
        on_parent_cancel: str = "cancel",
    ) -> ChildRun:
        """Start a child run of ``task_class`` (a BaseTask subclass, or its key
        ``module:Qualname``) with ``options`` (a config map or a TaskOptions), once per run
        and ``key`` (printable text of 1..94 characters): the step ``spawn:<key>`` keeps the
        child's ``task_id`` and ``run``, so a replay returns the same handle without starting
        another. ``on_parent_cancel``: ``cancel`` (cancelling this run cancels the child) or
        ``abandon`` (the child goes on). ``await handle.result()`` takes its outcome. A
        context without a spawner raises TaskUsageError (docs/runs.md, "Child runs")."""
        return await self._durable.spawn(
            task_class, options, key=key, on_parent_cancel=on_parent_cancel
        )

    async def gather(self, *handles: ChildRun) -> list[dict[str, Any]]:
        """The result maps of the child runs ``handles``, in their order, once every one has
        ended (the run suspends until all are there); if some did not succeed, the first
        one's ChildFailed (in the handles' order) is raised after all are in."""
        return await self._durable.gather(handles)

    # ------------------------------------------------------------ the run's signals

    @property
    def signals(self) -> RunSignals:
        """The run's signals (``deliver`` pushes one to the live run)."""
        return self._durable.signals

    def deliver(self, signal: Signal) -> None:
        """For the executor: a signal pushed to the live run (wakes its waits); call
        ``handle_signals`` after it for a task with handlers."""
        self._durable.used = True
        self._durable.signals.deliver(signal)

    @property
    def durable_used(self) -> bool:
        """Whether this attempt slept, waited for or handled signals, was delivered one, or was
        cancelled or paused: then the run may have a ``runs`` row to finish."""
        return self._durable.used or self._durable.signals.used

    # ------------------------------------------------------------ off the event loop

    async def run_in_thread(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in the thread pool: blocking I/O, or CPU work that releases the GIL.

        Cancelling the awaiting task does not stop the thread; check a flag in ``fn``.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread_pool, fn, *args)

    async def run_in_process(self, fn: Callable[[*Ts], T], *args: *Ts) -> T:
        """``fn(*args)`` in the process pool: heavy CPU work. ``fn`` must be a top-level
        function and ``args`` and the result picklable.
        """
        if self._process_pool is None:
            raise TaskUsageError(
                f"task {self.task_id}: run_in_process needs a process pool, and the executor "
                "gave this context none"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._process_pool, fn, *args)
