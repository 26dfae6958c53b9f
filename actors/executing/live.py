"""The runs in progress on one executor, by run key, and what the scheduler pushes them
(``scheduler.run.deliver.<category>``): a signal is delivered to the run's context (and its
signal handlers run), a cancel cancels it, a pause suspends it at its next boundary, a resume
lifts a pause not reached yet, a query is answered (``answer``), an update is validated, kept
and handled beside the run (``update``). A cancel for a run not in progress here is remembered
(the last MAX_EARLY_CANCELS run keys): a run that starts later is refused as cancelled."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from actors.scheduling.protocol import RunPush
from actors.storing.client import StoreClient
from scheduler import Clock
from store.errors import StoreError
from store.records import NewSignal
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.queries import answer_query
from tasks.signals import Signal
from tasks.updates import update_signal, validate_update

MAX_EARLY_CANCELS = 10_000  # cancels of runs not in progress here, remembered for their start

Answer = Callable[[Any, str | None], Awaitable[None]]  # (answer, error) to the asker


class LiveRun:
    """One attempt in progress: its context, the task object it runs, and what reached it."""

    def __init__(self, run_key: str, context: TaskContext[Any], task: BaseTask) -> None:
        self.run_key = run_key
        self.context = context
        self.task = task
        self.pushed = False  # a signal or control reached it: the store has a row for its run
        self._handling: set[asyncio.Task[None]] = set()

    def handle_signals(self, log: logging.Logger) -> None:
        """Run the task's signal handlers for what was delivered, beside the run."""
        handling = asyncio.create_task(self._handle(log), name=f"signals-{self.run_key}")
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)

    async def _handle(self, log: logging.Logger) -> None:
        try:
            await self.context.handle_signals(self.task)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a handler's failure, or the run's end (Suspended...)
            log.warning(
                "run %s: its signal handlers stopped: %s: %s", self.run_key, type(exc).__name__, exc
            )

    def beside(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``work`` beside the run (stopped by ``close``)."""
        handling = asyncio.create_task(work, name=f"{name}-{self.run_key}")
        self._handling.add(handling)
        handling.add_done_callback(self._handling.discard)

    async def close(self) -> None:
        """Stop the signal handling still going on (the run is over)."""
        for handling in tuple(self._handling):
            handling.cancel()
        if self._handling:
            await asyncio.gather(*self._handling, return_exceptions=True)


class LiveRuns:
    """The runs in progress here by run key, and the cancels that came before their start."""

    def __init__(self, log: logging.Logger, counters: Counter[str]) -> None:
        self._log = log
        self._counters = counters
        self._runs: dict[str, list[LiveRun]] = {}
        self._early: OrderedDict[str, str] = OrderedDict()  # run key -> the cancel's reason

    def __len__(self) -> int:
        return sum(len(runs) for runs in self._runs.values())

    def __contains__(self, run_key: object) -> bool:
        return run_key in self._runs

    def refused(self, run_key: str) -> str | None:
        """The reason of a cancel of ``run_key`` that came before its start, if one did."""
        return self._early.get(run_key)

    def enter(self, run_key: str, context: TaskContext[Any], task: BaseTask) -> LiveRun:
        live = LiveRun(run_key, context, task)
        self._runs.setdefault(run_key, []).append(live)
        return live

    async def leave(self, live: LiveRun) -> None:
        runs = self._runs.get(live.run_key, [])
        if live in runs:
            runs.remove(live)
        if not runs:
            self._runs.pop(live.run_key, None)
        await live.close()

    def answer(self, push: RunPush) -> tuple[Any, str | None] | None:
        """A query push's answer by the run's attempt in progress here: (answer, None), or
        (None, "<Type>: message") if its handler failed or it has no such query; None if the run
        is not in progress here (another executor may hold it)."""
        runs = self._runs.get(push.run_key, [])
        if not runs:
            return None
        assert push.name is not None, "RunPush checks a query's fields"
        live = runs[-1]
        self._counters["queries_answered"] += 1
        try:
            return answer_query(live.task, live.context, push.name), None
        except Exception as exc:
            return None, f"{type(exc).__name__}: {exc}"

    def update(self, push: RunPush, store: StoreClient, clock: Clock, reply: Answer) -> bool:
        """Take an update push for the run's attempt in progress here, beside it: validate it
        (a refusal is answered and nothing stored), keep it in the inbox as ``update:<name>``,
        run its handler and answer its result (``reply``). False if the run is not in progress
        here (another executor may hold it: nothing is answered)."""
        runs = self._runs.get(push.run_key, [])
        if not runs:
            return False
        live = runs[-1]
        self._counters["updates_taken"] += 1
        live.beside(self._update(live, push, store, clock, reply), "update")
        return True

    async def _update(
        self, live: LiveRun, push: RunPush, store: StoreClient, clock: Clock, reply: Answer
    ) -> None:
        assert push.name is not None, "RunPush checks an update's fields"
        context = live.context
        try:
            validate_update(live.task, context, push.name, push.value)
        except Exception as exc:
            self._counters["updates_refused"] += 1
            await reply(None, f"update {push.name!r} refused: {type(exc).__name__}: {exc}")
            return
        new = NewSignal(
            run_key=live.run_key,
            name=update_signal(push.name),
            payload=push.value,
            sender=push.sender or "",
            sent_at=clock.wall(),
        )
        try:
            kept, _row = await store.put_signal(
                new, task_id=context.task_id, scheduled_at=context.scheduled_at
            )
        except StoreError as exc:
            await reply(None, f"update {push.name!r} not kept: {type(exc).__name__}: {exc}")
            return
        live.pushed = True  # the store has a row for the run now
        signal = Signal(
            seq=kept.seq,
            name=kept.name,
            payload=kept.payload,
            sender=kept.sender,
            sent_at=kept.sent_at,
        )
        try:
            result = await context.handle_update(live.task, signal)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the handler's failure, or the run's end (Suspended...)
            self._counters["updates_failed"] += 1
            await reply(
                None,
                f"update {push.name!r} was kept (signal {signal.seq}) but not handled: "
                f"{type(exc).__name__}: {exc}",
            )
            return
        self._counters["updates_handled"] += 1
        await reply({"seq": signal.seq, "result": result}, None)

    def push(self, push: RunPush) -> None:
        """What the scheduler pushed, to the run's attempts in progress here."""
        runs = self._runs.get(push.run_key, [])
        if push.kind == "cancel" and not runs:
            self._remember(push.run_key, push.reason or "cancelled")
            return
        if not runs:
            self._counters["pushes_not_live"] += 1
            return
        self._counters[f"pushed_{push.kind}"] += 1
        for live in runs:
            live.pushed = True
            self._apply(live, push)

    def _apply(self, live: LiveRun, push: RunPush) -> None:
        context = live.context
        if push.kind == "signal":
            assert push.seq is not None, "RunPush checks a signal's fields"
            assert push.name is not None
            assert push.sent_at is not None
            context.deliver(
                Signal(
                    seq=push.seq,
                    name=push.name,
                    payload=push.value,
                    sender=push.sender or "",
                    sent_at=push.sent_at,
                )
            )
            live.handle_signals(self._log)
        elif push.kind == "cancel":
            context.cancel_run(push.reason or "cancelled")
        elif push.kind == "pause":
            context.pause()
        elif push.kind == "resume":
            context.resume()

    def _remember(self, run_key: str, reason: str) -> None:
        self._counters["early_cancels"] += 1
        self._early[run_key] = reason
        self._early.move_to_end(run_key)
        while len(self._early) > MAX_EARLY_CANCELS:
            self._early.popitem(last=False)
