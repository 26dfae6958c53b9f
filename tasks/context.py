"""What a running task is given: its options, a logger, the clock, cancellation, progress, and
helpers that keep blocking work off the event loop. The executor builds one per run.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Generic, TypeVar, TypeVarTuple

from scheduler.clock import Clock
from tasks.errors import TaskCancelled, TaskUsageError
from tasks.options import TaskOptions
from tasks.services import TaskServices

__all__ = [
    "ProgressCallback",
    "TaskCancelled",
    "TaskContext",
]  # TaskCancelled: check_cancelled raises it

OptionsT_co = TypeVar("OptionsT_co", bound=TaskOptions, covariant=True)
T = TypeVar("T")
Ts = TypeVarTuple("Ts")
ProgressCallback = Callable[[float, str], Awaitable[None]]
MAX_NOTE_CHARS = 500

_logger = logging.getLogger("taskbus.task")


async def _no_progress(fraction: float, note: str) -> None:
    return None


class TaskContext(Generic[OptionsT_co]):
    """One run's view of the world. Attributes are read-only by convention.

    Injected by the executor (defaults suit tests): ``cancelled``, the event it sets on timeout
    or shutdown (``cancel(reason)`` sets it with a reason); ``on_progress`` publishes a status
    event; ``idle_probe`` says whether the host is idle (default: never idle, the safe answer);
    ``loop_lag_s`` is the executor's measured event-loop lag in seconds (default 0);
    ``threads`` (default: the loop's shared executor) and ``processes`` (default none:
    ``run_in_process`` then raises) run blocking and heavy work.
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
    ) -> None:
        if scheduled_at.utcoffset() is None:
            raise TaskUsageError(f"scheduled_at must be aware, not {scheduled_at.isoformat()}")
        self.task_id = task_id
        self.execution_id = execution_id
        self.scheduled_at = scheduled_at
        self.attempt = attempt
        self._options = options
        self.services = services
        self.clock = clock
        self.data_dir = data_dir
        self.log = logging.LoggerAdapter(
            logger or _logger, {"task_id": task_id, "execution_id": execution_id}
        )
        self.cancelled = cancelled if cancelled is not None else asyncio.Event()
        self._cancel_reason = ""
        self._progress = on_progress or _no_progress
        self._idle_probe = idle_probe
        self._loop_lag = loop_lag_s
        self._thread_pool = threads
        self._process_pool = processes

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
        """Raise TaskCancelled if the run was cancelled: call it between steps of long work."""
        if self.cancelled.is_set():
            raise TaskCancelled(self.cancel_reason)

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
