"""Checkpointed steps: ``await ctx.step(name, fn, *args)`` runs ``fn`` once per run and keeps its
result, so that the run, run again (a retry, a re-dispatch after its executor died), returns the
stored result instead of running ``fn`` again. The model and its guarantees: docs/runs.md.

A step is known by its id, ``name`` or ``name[key]``, never by its position, so steps awaited
together (``asyncio.gather``) are safe. Where the steps are kept is a :class:`StepJournal`: the
executor gives each run one over the store (``store.step.put``/``store.step.list``, keyed by the
fire, shared by all its attempts); :class:`MemoryJournal` keeps them in memory (a context built
by hand, in tests).
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from scheduler.clock import Clock, sleep, within
from scheduler.errors import TimedOut
from tasks.errors import StepFailed, StepsChanged, StepTimedOut, TaskCancelled, TaskUsageError
from tasks.result import check_plain

T = TypeVar("T")
MAX_STEP_ID_CHARS = 256  # the store's bound on a step's name
MAX_STEP_ATTEMPTS = 1_000

RunSync = Callable[..., Awaitable[Any]]  # runs a plain function off the loop: ctx.run_in_thread


async def _unguarded(make: Callable[[], Awaitable[T]]) -> T:
    return await make()


class Guard(Protocol):
    """Awaits the work ``make()`` starts for a step, or does not start it or stops awaiting it
    once the run is cancelled (RunCancelled)."""

    def __call__(self, make: Callable[[], Awaitable[T]]) -> Awaitable[T]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredStep:
    """A finished step as a journal keeps it: ``ok`` with its ``result``, or not with its final
    ``error``; ``attempts``: how many times it ran in the run that finished it."""

    name: str
    ok: bool
    started_at: datetime
    finished_at: datetime
    result: Any = field(default=None, repr=False)
    error: str | None = None
    attempts: int = 1


class StepJournal(Protocol):
    """Where one run's steps are kept."""

    async def load(self) -> Sequence[StoredStep]:
        """The steps kept for the run (by earlier attempts of it)."""
        ...

    async def record(self, step: StoredStep) -> StoredStep:
        """Keep a finished step, committed before it returns; the first record of a step wins,
        and a later one returns the step as first kept."""
        ...


class MemoryJournal:
    """Steps kept in memory, for as long as the journal lives (one per run by default)."""

    def __init__(self, steps: Sequence[StoredStep] = ()) -> None:
        self.steps: dict[str, StoredStep] = {step.name: step for step in steps}

    async def load(self) -> Sequence[StoredStep]:
        return tuple(self.steps.values())

    async def record(self, step: StoredStep) -> StoredStep:
        return self.steps.setdefault(step.name, step)


@dataclass(frozen=True, slots=True)
class StepRetry:
    """How often a step is tried within one run: ``attempts`` in all (1: no retry), waiting
    ``delay_s`` after the first failure, then ``backoff`` times longer after each next one. A
    step given a retry policy whose attempts all fail stores its error: the step has failed for
    good, and every later run of the fire raises StepFailed for it."""

    attempts: int = 3
    delay_s: float = 1.0
    backoff: float = 2.0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.attempts, int)
            or isinstance(self.attempts, bool)
            or not 1 <= self.attempts <= MAX_STEP_ATTEMPTS
        ):
            raise TaskUsageError(f"StepRetry.attempts is 1..{MAX_STEP_ATTEMPTS}")
        for name in ("delay_s", "backoff"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise TaskUsageError(f"StepRetry.{name} is a finite number >= 0, not {value!r}")

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1 the first)."""
        return float(self.delay_s * self.backoff ** (attempt - 1))


def step_id(name: str, key: object = None) -> str:
    """``name``, or ``name[key]`` for one of a family of steps (a loop's); TaskUsageError if it
    is not printable text of at most MAX_STEP_ID_CHARS characters."""
    if not isinstance(name, str) or not name:
        raise TaskUsageError(f"a step's name is a non-empty str, not {name!r}")
    if key is not None and (not isinstance(key, str | int) or isinstance(key, bool)):
        raise TaskUsageError(f"a step's key is a str or an int, not {type(key).__name__}")
    ident = name if key is None else f"{name}[{key}]"
    if len(ident) > MAX_STEP_ID_CHARS or not ident.isprintable():
        raise TaskUsageError(
            f"step {ident[:40]!r}: a step id is printable text of at most "
            f"{MAX_STEP_ID_CHARS} characters"
        )
    return ident


class RunSteps:
    """One run's steps: what its journal kept, what the run asked for, and running the rest."""

    def __init__(
        self,
        journal: StepJournal,
        clock: Clock,
        run_sync: RunSync,
        *,
        guard: Guard = _unguarded,
        gate: Callable[[], None] | None = None,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._run_sync = run_sync
        self._guard = guard  # every wait of a step's work goes through it (cancel_run)
        self._gate = gate  # called before a step that is not kept runs (the pause boundary)
        self._loading: asyncio.Task[dict[str, StoredStep]] | None = None
        self._kept: dict[str, StoredStep] = {}
        self._merged = False
        self._recorded_before: frozenset[str] = frozenset()
        self._asked: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    async def step(
        self,
        ident: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        *,
        retry: StepRetry | None,
        timeout_s: float | None,
        gated: bool = True,
    ) -> Any:
        if retry is not None and not isinstance(retry, StepRetry):
            raise TaskUsageError(f"step {ident!r}: retry is a StepRetry, not {retry!r}")
        if timeout_s is not None and (
            not isinstance(timeout_s, int | float) or not math.isfinite(timeout_s) or timeout_s <= 0
        ):
            raise TaskUsageError(f"step {ident!r}: timeout_s is a number > 0, not {timeout_s!r}")
        await self._load()
        self._asked.add(ident)
        async with self._locks.setdefault(ident, asyncio.Lock()):  # one run of an id at once
            kept = self._kept.get(ident)
            if kept is None:
                if gated and self._gate is not None:
                    self._gate()
                kept = await self._run(ident, fn, args, retry, timeout_s)
                self._kept[ident] = kept
        if not kept.ok:
            raise StepFailed(ident, kept.error or "")
        return kept.result

    async def recall(self, ident: str) -> StoredStep | None:
        """The step ``ident`` if it is kept (the run asked for it: see ``check_unchanged``)."""
        await self._load()
        self._asked.add(ident)
        return self._kept.get(ident)

    async def keep(self, ident: str, result: Any) -> Any:
        """Keep ``result`` as the finished step ``ident`` unless it is kept already; the kept
        result (the first one kept wins)."""
        await self._load()
        self._asked.add(ident)
        async with self._locks.setdefault(ident, asyncio.Lock()):
            kept = self._kept.get(ident)
            if kept is None:
                check_plain(f"of step {ident!r}", result)
                now = self._clock.wall()
                done = StoredStep(
                    name=ident, ok=True, result=result, started_at=now, finished_at=now
                )
                kept = self._kept[ident] = await self._journal.record(done)
        return kept.result

    def mark_asked(self, ident: str) -> None:
        """Count ``ident`` as asked for by this run (a step a kept one stands for)."""
        self._asked.add(ident)

    async def kept_steps(self) -> dict[str, StoredStep]:
        """Every step kept so far (loaded or finished by this run), by id."""
        await self._load()
        return dict(self._kept)

    def check_unchanged(self) -> None:
        """StepsChanged if steps recorded before this run were never asked for by it. A run that
        asked for no step at all is not checked (its steps are never loaded)."""
        if self._loading is None:
            return
        missing = tuple(sorted(self._recorded_before - self._asked))
        if missing:
            raise StepsChanged(missing)

    async def _load(self) -> None:
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._read())
        kept = await asyncio.shield(self._loading)
        if not self._merged:
            self._merged = True
            self._recorded_before = frozenset(kept)
            for name, step in kept.items():
                self._kept.setdefault(name, step)

    async def _read(self) -> dict[str, StoredStep]:
        return {step.name: step for step in await self._journal.load()}

    async def _run(
        self,
        ident: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        retry: StepRetry | None,
        timeout_s: float | None,
    ) -> StoredStep:
        """The step as kept once it succeeded, or once its own ``retry`` is spent (failed);
        without a ``retry``, its failure propagates and nothing is kept."""
        started = self._clock.wall()
        attempts = 1 if retry is None else retry.attempts
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._attempt(ident, fn, args, timeout_s)
            except Exception as exc:
                if isinstance(exc, TaskUsageError | TaskCancelled):
                    raise  # the task's own mistake, or the run is cancelled: never retried
                if retry is None:
                    raise  # no retry policy of its own: nothing is stored, the run fails
                if attempt < attempts:
                    await self._guard(partial(sleep, self._clock, retry.delay_after(attempt)))
                    continue
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                failed = StoredStep(
                    name=ident,
                    ok=False,
                    error=f"{error} (after {attempt} attempts)",
                    attempts=attempt,
                    started_at=started,
                    finished_at=self._clock.wall(),
                )
                return await self._journal.record(failed)  # step() raises StepFailed
            check_plain(f"of step {ident!r}", result)
            done = StoredStep(
                name=ident,
                ok=True,
                result=result,
                attempts=attempt,
                started_at=started,
                finished_at=self._clock.wall(),
            )
            return await self._journal.record(done)

    async def _attempt(
        self, ident: str, fn: Callable[..., Any], args: tuple[Any, ...], timeout_s: float | None
    ) -> Any:
        def make() -> Awaitable[Any]:
            if inspect.iscoroutinefunction(fn):
                work: Awaitable[Any] = fn(*args)
            else:
                work = self._sync(fn, args)
            if timeout_s is None:
                return work
            return _within(self._clock, timeout_s, work, ident)

        return await self._guard(make)

    async def _sync(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        result = await self._run_sync(fn, *args)
        if inspect.isawaitable(result):  # a plain callable that returned a coroutine
            return await result
        return result


async def _within(clock: Clock, timeout_s: float, work: Awaitable[T], ident: str) -> T:
    """``await work``, cancelled once ``timeout_s`` has passed on ``clock`` (StepTimedOut)."""
    try:
        return await within(clock, timeout_s, work)
    except TimedOut as exc:
        raise StepTimedOut(ident, timeout_s) from exc
