"""The store's one database thread, and group commit.

Every libSQL call happens on this thread, never in the event loop. Writes queue up while the
thread is busy; the thread takes every write waiting (up to ``max_batch``), runs them in one
transaction (writes of one kind queued next to each other as one batch, see
``Database.commit_group``), commits once, and only then resolves the writers' futures, all of
them in one hop to the event loop: an acknowledged write is on disk (as durably as
``synchronous`` says, see docs/store.md). Reads and maintenance calls run alone, between groups,
in arrival order (the reads queued next to each other in one go, woken together).

libsql 0.1.11 holds the GIL for the whole of each call, fsync included, so the event loop still
stalls while a statement or a commit runs (a millisecond or so; longer for a WAL checkpoint), and
the thread's SQL time adds to the loop's Python time rather than overlapping it: that sum, not
the disk, bounds the durable write rate (docs/store.md, §10). The thread yields after every
group; keep statements short (pages, chunked deletes), and run the store actor as its own
process where even that matters.

Cancelling a caller does not withdraw its write: the write may still commit.

**When the engine fails.** Each job runs guarded: whatever libSQL raises for it, a panic included
(``pyo3_runtime.PanicException``, which derives from BaseException), fails that job alone with a
StoreError naming what it was for (``Damaged``: "cannot read the history of task 'x': libsql
panicked: ... Utf8Error ..."), and the thread goes on with the next job. After a panic the thread
checks the connection with one read; if that fails too, it opens a new connection, and the job's
error says so. Only what ends a thread on purpose (``errors.NOT_OURS``: SystemExit,
KeyboardInterrupt) or a connection that cannot be reopened ends the thread: every job taken or
queued then, and every later one, fails at once with the reason, and :meth:`dead` returns, so
that the store's actor dies and its supervisor restarts it. What went wrong is kept in
``condition`` (``store.condition``), which the actor's health reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from store.condition import StoreCondition
from store.database import Database
from store.errors import (
    NOT_OURS,
    Damaged,
    EngineFailure,
    NotFound,
    StoreError,
    WriteRefused,
    engine_failure,
)
from store.operations import Operation, Outcome
from store.salvage import PartialPage

T = TypeVar("T")
Kind = Literal["write", "read", "call"]

log = logging.getLogger("taskbus.store")


@dataclass(slots=True)
class _Job:
    kind: Kind
    function: Callable[[Any], Any]
    future: asyncio.Future[Any]
    what: str  # what the job is for, in an error's words: "the history of task 'x'"


@dataclass(slots=True)
class WorkerStats:
    """Group commits so far: ``writes / commits`` is the mean group size. ``group_seconds`` is
    the thread's time in groups (statements and commits), ``commit_seconds`` the part of it in
    COMMIT (writing the log, fsync, checkpoints); libsql holds the GIL through both.
    """

    commits: int = 0
    writes: int = 0
    largest_group: int = 0
    reads: int = 0
    group_seconds: float = 0.0
    commit_seconds: float = 0.0


class StoreWorker:
    """Owns ``database`` from :meth:`start` to :meth:`close`; no other thread may touch it."""

    def __init__(self, database: Database, *, max_batch: int = 512, name: str = "store") -> None:
        self.database = database
        self.max_batch = max_batch
        self.name = name
        self.stats = WorkerStats()
        self.condition = StoreCondition(database.path)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._finished: asyncio.Future[None] | None = None
        self._died: asyncio.Future[StoreError] | None = None
        self._death: StoreError | None = None  # set by the thread as it dies, before its drain
        self._taken: list[_Job] = []  # the jobs the thread has taken and not settled yet
        self._closing = False

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken by the thread."""
        return self._queue.qsize()

    @property
    def death(self) -> StoreError | None:
        """Why the thread died (None while it serves, or after a plain close)."""
        return self._death

    async def dead(self) -> StoreError:
        """Wait until the thread dies; returns why. Never returns after a plain :meth:`close`."""
        assert self._died is not None, "start() first"
        return await asyncio.shield(self._died)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        self._died = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, name=f"taskbus-{self.name}-db", daemon=True
        )
        self._thread.start()

    async def write(self, operation: Operation[T], *, what: str = "the rows a write reads") -> T:
        """Run ``operation`` in the next group commit; returns once that group is committed.

        Raises WriteRefused if the file takes no writes (the whole group fails), Damaged
        naming ``what`` if what the write reads is damaged.
        """
        return await self._submit("write", operation, what)  # type: ignore[no-any-return]

    async def read(self, operation: Operation[T], *, what: str = "the rows asked for") -> T:
        """Run ``operation`` outside any transaction; it sees every write acknowledged before.

        ``what`` names what it reads ("the history of task 'x'"): Damaged says it cannot be
        read, and ``condition`` keeps it until it is read in full again.
        """
        return await self._submit("read", operation, what)  # type: ignore[no-any-return]

    async def call(self, function: Callable[[Database], T], *, what: str | None = None) -> T:
        """Run ``function`` with the Database itself (open, rekey, backup...), alone."""
        named = what or f"the file (for {_name(function)})"
        return await self._submit("call", function, named)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Finish what is queued, close the database, end the thread. Idempotent."""
        if self._thread is None or self._finished is None:
            return
        if not self._closing:
            self._closing = True
            self._queue.put(None)
        await asyncio.shield(self._finished)

    def _submit(self, kind: Kind, function: Callable[[Any], Any], what: str) -> asyncio.Future[Any]:
        """The job's future; raises at once if the thread is not running (it died: never queue
        a job nobody will take)."""
        if self._death is not None:
            raise StoreError(str(self._death))
        if self._loop is None or self._closing:
            raise StoreError(f"store {self.database.path} is not running")
        future = self._loop.create_future()
        self._queue.put(_Job(kind, function, future, what))
        if self._death is not None:  # the thread died meanwhile: its drain may have missed it
            self._fail_queued(self._death)
        return future

    # ------------------------------------------------------------ the thread

    def _serve(self) -> None:
        carry: _Job | None = None
        stopping = False
        try:
            while not stopping:
                job = carry if carry is not None else self._queue.get()
                if job is None:
                    break
                if job.kind == "write":
                    group, carry, stopping = self._group(job)
                    self._taken = group
                    self._commit(group)
                elif job.kind == "read":
                    group, carry, stopping = self._group(job)
                    self._taken = group
                    self._read_all(group)
                else:
                    carry = None
                    self._taken = [job]
                    self._run_alone(job)
                self._taken = []
                # libsql held the GIL through every statement and the fsync: give the event
                # loop its turn now rather than at the next forced switch (5 ms), or a stream
                # of small commits keeps it waiting for tens of milliseconds.
                time.sleep(0)
        except BaseException as exc:  # the thread cannot go on: fail everything, loudly
            self._die(exc, carry)
        finally:
            with contextlib.suppress(BaseException):
                self.database.close()
            self._settle_finished()

    def _die(self, exc: BaseException, carry: _Job | None) -> None:
        log.error("store %s: database thread died", self.database.path, exc_info=exc)
        reason = str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
        error = StoreError(f"store {self.database.path}: its database thread died: {reason}")
        self._death = error  # first: from now on _submit refuses, or drains what it queued
        for job in [*self._taken, *([carry] if carry is not None else [])]:
            self._settle(job.future, Outcome(error=error))  # a job settled already stays so
        self._fail_queued(error)
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._announce_death, error)

    def _announce_death(self, error: StoreError) -> None:
        self.condition.died = str(error).removeprefix(f"store {self.database.path}: ")
        if self._died is not None and not self._died.done():
            self._died.set_result(error)

    def _group(self, first: _Job) -> tuple[list[_Job], _Job | None, bool]:
        """``first`` and the jobs of its kind (writes, or reads) queued right behind it (up to
        ``max_batch``); then the job that ended the group, if it is of another kind, and
        whether it was close()'s stop.
        """
        group = [first]
        while len(group) < self.max_batch:
            try:
                following = self._queue.get_nowait()
            except queue.Empty:
                break
            if following is None:
                return group, None, True
            if following.kind != first.kind:
                return group, following, False
            group.append(following)
        return group, None, False

    def _read_all(self, group: list[_Job]) -> None:
        """Reads queued next to each other, one after the other, outside any transaction; their
        callers are woken in one hop to the loop, like a group commit's."""
        outcomes: list[Outcome[Any]] = []
        for job in group:
            self.stats.reads += 1
            outcome = _guarded(functools.partial(self.database.read, job.function))
            outcomes.extend(self._named([job], [outcome]))
        self._hand_over(group, outcomes, committed=False)

    def _run_alone(self, job: _Job) -> None:
        outcome = _guarded(functools.partial(job.function, self.database))
        self._hand_over([job], self._named([job], [outcome]), committed=False)

    def _commit(self, group: list[_Job]) -> None:
        started = time.perf_counter()
        committed = False
        try:
            outcomes = self.database.commit_group([job.function for job in group])
        except BaseException as exc:
            if isinstance(exc, NOT_OURS):
                raise
            outcomes = [Outcome(error=exc) for _ in group]
        else:
            committed = True
            self.stats.commits += 1
            self.stats.writes += len(group)
            self.stats.largest_group = max(self.stats.largest_group, len(group))
        self.stats.group_seconds += time.perf_counter() - started
        self.stats.commit_seconds = self.database.commit_seconds
        self._hand_over(group, self._named(group, outcomes), committed=committed)

    # ------------------------------------------------------------ failures

    def _named(self, jobs: list[_Job], outcomes: list[Outcome[Any]]) -> list[Outcome[Any]]:
        """The outcomes with each error a StoreError naming its job's ``what``. After an engine
        failure (a panic), the connection is checked first: still sound, the failure was the
        data's (Damaged); unusable, it is reopened (raising, which ends the thread, if it
        cannot be) and the error says so.
        """
        if all(outcome.error is None for outcome in outcomes):
            return outcomes
        errors = [self._store_error(outcome.error) for outcome in outcomes]
        reopened = False
        if any(isinstance(error, EngineFailure) for error in errors):
            reopened = self._recover()
        named: list[Outcome[Any]] = []
        for job, outcome, error in zip(jobs, outcomes, errors, strict=True):
            named.append(
                outcome if error is None else Outcome(error=self._for(job, error, reopened))
            )
        return named

    def _store_error(self, error: BaseException | None) -> BaseException | None:
        failure = None if error is None else engine_failure(error)
        if failure is None:
            return error
        wrapped = EngineFailure(f"store {self.database.path}: {failure}", failure)
        wrapped.__cause__ = error
        return wrapped

    def _for(self, job: _Job, error: BaseException, reopened: bool) -> BaseException:
        path = self.database.path
        named: BaseException
        if isinstance(error, EngineFailure):
            if reopened:
                named = EngineFailure(
                    f"store {path}: {job.what}: {error.engine_error}; the connection was "
                    f"unusable and has been reopened",
                    error.engine_error,
                )
            else:
                named = Damaged(path, job.what, error.engine_error)
            named.__cause__ = error.__cause__
            return named
        if isinstance(error, Damaged) and not error.what:
            named = Damaged(path, job.what, error.engine_error)
            named.__cause__ = error.__cause__
            return named
        return error

    def _recover(self) -> bool:
        """After an engine failure: whether the connection had to be reopened. Raises what
        reopening raised if it could not be (the thread then dies)."""
        self.database.rollback()  # a write group's transaction, if the panic left one open
        try:
            self.database.probe()
        except BaseException as exc:
            if isinstance(exc, NOT_OURS):
                raise
            log.warning(
                "store %s: the connection is unusable after an engine failure (%s: %s); "
                "reopening it",
                self.database.path,
                type(exc).__name__,
                exc,
            )
        else:
            return False
        self.database.reconnect()
        log.warning("store %s: reopened its connection", self.database.path)
        return True

    # ------------------------------------------------------------ back to the loop

    def _hand_over(self, jobs: list[_Job], outcomes: list[Outcome[Any]], committed: bool) -> None:
        """One hop to the loop for the whole group, not one per job: each
        call_soon_threadsafe takes the loop's lock and writes to its self-pipe."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(self._settle_jobs, jobs, outcomes, committed)

    def _settle_jobs(self, jobs: list[_Job], outcomes: list[Outcome[Any]], committed: bool) -> None:
        """On the loop: what the outcomes say of the file goes into ``condition`` (before any
        caller wakes up), then the callers get them."""
        condition = self.condition
        if committed:
            condition.written()
        for job, outcome in zip(jobs, outcomes, strict=True):
            error, value = outcome.error, outcome.value
            if isinstance(error, WriteRefused):
                condition.write_refused(error.reason)
            elif isinstance(error, Damaged):
                condition.unreadable(error.what, error.engine_error)
            elif job.kind == "read" and (error is None or isinstance(error, NotFound)):
                if isinstance(value, PartialPage) and value.unreadable:
                    left_out = "; ".join(value.unreadable)
                    condition.unreadable(job.what, f"rows left out: {left_out}")
                else:
                    condition.readable(job.what)
        _resolve_all([job.future for job in jobs], outcomes)

    def _fail_queued(self, error: StoreError) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not None:
                self._settle(job.future, Outcome(error=error))

    def _settle(self, future: asyncio.Future[Any], outcome: Outcome[Any]) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(_resolve, future, outcome)

    def _settle_finished(self) -> None:
        assert self._loop is not None
        assert self._finished is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, self._finished, Outcome(value=None))


def _guarded(run: Callable[[], T]) -> Outcome[T]:
    """``run()``'s value, or whatever it raised but what ends the thread (``NOT_OURS``)."""
    try:
        return Outcome(value=run())
    except BaseException as exc:
        if isinstance(exc, NOT_OURS):
            raise
        return Outcome(error=exc)


def _name(function: Callable[..., Any]) -> str:
    inner = getattr(function, "func", function)  # a functools.partial
    return str(getattr(inner, "__name__", "a maintenance call"))


def _resolve_all(futures: list[asyncio.Future[Any]], outcomes: list[Outcome[Any]]) -> None:
    for future, outcome in zip(futures, outcomes, strict=True):
        _resolve(future, outcome)


def _resolve(future: asyncio.Future[Any], outcome: Outcome[Any]) -> None:
    if future.done():
        return  # the caller was cancelled
    if outcome.error is not None:
        future.set_exception(outcome.error)
    else:
        future.set_result(outcome.value)
