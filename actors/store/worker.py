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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from actors.store.database import Database, Operation, Outcome
from actors.store.errors import StoreError

T = TypeVar("T")
Kind = Literal["write", "read", "call"]

log = logging.getLogger("taskbus.store")


@dataclass(slots=True)
class _Job:
    kind: Kind
    function: Callable[[Any], Any]
    future: asyncio.Future[Any]


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
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._finished: asyncio.Future[None] | None = None
        self._closing = False

    @property
    def pending(self) -> int:
        """Jobs queued and not yet taken by the thread."""
        return self._queue.qsize()

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._serve, name=f"taskbus-{self.name}-db", daemon=True
        )
        self._thread.start()

    async def write(self, operation: Operation[T]) -> T:
        """Run ``operation`` in the next group commit; returns once that group is committed."""
        return await self._submit("write", operation)  # type: ignore[no-any-return]

    async def read(self, operation: Operation[T]) -> T:
        """Run ``operation`` outside any transaction; it sees every write acknowledged before."""
        return await self._submit("read", operation)  # type: ignore[no-any-return]

    async def call(self, function: Callable[[Database], T]) -> T:
        """Run ``function`` with the Database itself (open, rekey, backup...), alone."""
        return await self._submit("call", function)  # type: ignore[no-any-return]

    async def close(self) -> None:
        """Finish what is queued, close the database, end the thread. Idempotent."""
        if self._thread is None or self._finished is None:
            return
        if not self._closing:
            self._closing = True
            self._queue.put(None)
        await asyncio.shield(self._finished)

    def _submit(self, kind: Kind, function: Callable[[Any], Any]) -> asyncio.Future[Any]:
        if self._loop is None or self._closing:
            raise StoreError(f"store {self.database.path} is not running")
        future = self._loop.create_future()
        self._queue.put(_Job(kind, function, future))
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
                    self._commit(group)
                elif job.kind == "read":
                    group, carry, stopping = self._group(job)
                    self._read_all(group)
                else:
                    carry = None
                    self._run_alone(job)
                # libsql held the GIL through every statement and the fsync: give the event
                # loop its turn now rather than at the next forced switch (5 ms), or a stream
                # of small commits keeps it waiting for tens of milliseconds.
                time.sleep(0)
        except BaseException as exc:  # a bug: fail everything still queued, loudly
            log.exception("store %s: database thread died", self.database.path)
            self._fail_queued(StoreError(f"store {self.database.path}: thread died: {exc}"))
        finally:
            with contextlib.suppress(Exception):
                self.database.close()
            self._settle_finished()

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
            try:
                outcomes.append(Outcome(value=self.database.read(job.function)))
            except Exception as exc:
                outcomes.append(Outcome(error=exc))
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(_resolve_all, [j.future for j in group], outcomes)

    def _run_alone(self, job: _Job) -> None:
        try:
            value = job.function(self.database)
        except Exception as exc:
            self._settle(job.future, Outcome(error=exc))
        else:
            self._settle(job.future, Outcome(value=value))

    def _commit(self, group: list[_Job]) -> None:
        started = time.perf_counter()
        try:
            outcomes = self.database.commit_group([job.function for job in group])
        except Exception as exc:
            outcomes = [Outcome(error=exc) for _ in group]
        else:
            self.stats.commits += 1
            self.stats.writes += len(group)
            self.stats.largest_group = max(self.stats.largest_group, len(group))
        self.stats.group_seconds += time.perf_counter() - started
        self.stats.commit_seconds = self.database.commit_seconds
        # One hop to the loop for the whole group, not one per write: each
        # call_soon_threadsafe takes the loop's lock and writes to its self-pipe.
        assert self._loop is not None
        futures = [job.future for job in group]
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting
            self._loop.call_soon_threadsafe(_resolve_all, futures, outcomes)

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
