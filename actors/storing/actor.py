"""StoreActor: the store on the bus, answering ``store.*`` requests.

Each topic has its handler and, beside it, the reader of its request (``actors.storing.requests``):
a missing, mistyped or unknown field is refused with code ``invalid`` and a reason naming the
field, before anything is written. Store errors become codes too (``actors.storing.wire``):
``not_found``, ``conflict``, ``lease_lost``, ``store_error``; ``unknown_topic`` for a ``store.``
topic nobody answers. Topics and payloads: docs/store.md; the typed asking side:
``actors.storing.StoreClient``.

Many requests are handled at once (``concurrency``), so that writes arriving together share one
group commit; a write is answered only once it is committed. Times that matter (task updates,
leases, retention, when a run is due to wake) come from the actor's ``clock``, never from the
requester.

Health: the actor reports ``critical`` while its store cannot read (part of) its file and
``degraded`` while the file refuses writes (``Store.critical``/``degraded``), and dies,
so that its supervisor restarts it, when the store's database thread has died.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgpack

from actors.actor import Actor, on_request
from actors.storing import requests
from actors.storing.wire import error_code, plain
from bus import Envelope, Refused
from bus.envelope import Payload
from config import topics
from store.errors import StoreError
from store.libsql_store import LibsqlStore
from store.records import ExecutionOutcome, NewDeadLetter, Page, RunSuspension
from store.salvage import PartialPage
from store.store import Store

DEFAULT_REPLY_BYTES = 512 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreActor(Actor):
    """Serves ``store`` over the bus; opens it on start and closes it on stop."""

    name = "store"
    namespace = topics.STORE
    concurrency = 64

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_reply_bytes: int = DEFAULT_REPLY_BYTES,
    ) -> None:
        super().__init__()
        self.store = store
        self._clock = clock
        self._max_reply_bytes = max_reply_bytes

    async def on_start(self) -> None:
        await self.store.start()

    async def on_stop(self) -> None:
        await self.store.close()

    def refusal(self, error: Exception) -> Refused | None:
        if isinstance(error, StoreError):
            return Refused(error_code(error), str(error))
        return None

    # ------------------------------------------------------------ health

    def metrics(self) -> dict[str, float]:
        """The group commits of a running LibsqlStore: counts, and seconds in them."""
        if not isinstance(self.store, LibsqlStore) or self.store.condition is None:
            return {}
        worker = self.store.worker
        return {
            "commits": float(worker.stats.commits),
            "writes": float(worker.stats.writes),
            "commit_seconds": worker.stats.commit_seconds,
            "group_seconds": worker.stats.group_seconds,
            "jobs_waiting": float(worker.pending),
        }

    async def run(self) -> None:
        """Dies (the supervisor restarts the actor, which reopens the file) once the store's
        database thread has died: every request would fail from then on."""
        raise await self.store.serving()

    def critical(self) -> list[str]:
        return self.store.critical()

    def degraded(self) -> list[str]:
        return self.store.degraded()

    # ------------------------------------------------------------ tasks

    @on_request(topics.STORE_TASK_PUT, read=requests.task_put)
    async def task_put(self, request: Envelope, put: requests.TaskPut) -> Payload:
        stored = await self.store.put_task(
            put.spec, now=self._clock(), expected_version=put.expected_version
        )
        return {"task": plain(stored.record), "duplicate": stored.duplicate}

    @on_request(topics.STORE_TASK_PUT_MANY, read=requests.task_put_many)
    async def task_put_many(self, request: Envelope, many: requests.TaskPutMany) -> Payload:
        outcomes = await self.store.put_tasks(many.puts, now=self._clock(), fence=many.fence)
        replies: list[dict[str, Any]] = []
        for put, outcome in zip(many.puts, outcomes, strict=True):
            if isinstance(outcome, StoreError):
                error = {"code": error_code(outcome), "reason": str(outcome)}
                replies.append({"task_id": put.spec.task_id, "error": error})
            else:
                replies.append({"task": plain(outcome.record), "duplicate": outcome.duplicate})
        return {"tasks": replies}

    @on_request(topics.STORE_TASK_GET, read=requests.task_ref)
    async def task_get(self, request: Envelope, task_id: str) -> Payload:
        return {"task": plain(await self.store.get_task(task_id))}

    @on_request(topics.STORE_TASK_LIST, read=requests.task_page)
    async def task_list(self, request: Envelope, page: requests.TaskPage) -> Payload:
        found = await self.store.list_tasks(after=page.after, limit=page.limit, owner=page.owner)
        return self._page("tasks", found)

    @on_request(topics.STORE_TASK_DELETE, read=requests.task_ref)
    async def task_delete(self, request: Envelope, task_id: str) -> Payload:
        return {"deleted": await self.store.delete_task(task_id)}

    @on_request(topics.STORE_TASK_STATUS, read=requests.task_ref)
    async def task_status(self, request: Envelope, task_id: str) -> Payload:
        return {"status": plain(await self.store.task_status(task_id))}

    @on_request(topics.STORE_TASK_MARK_RUN, read=requests.mark_run)
    async def task_mark_run(self, request: Envelope, mark: requests.MarkRun) -> Payload:
        task = await self.store.mark_run(
            mark.task_id, last_run=mark.last_run, next_run=mark.next_run, now=self._clock()
        )
        return {"task": plain(task)}

    @on_request(topics.STORE_TASK_RESET, read=requests.reset)
    async def task_reset(self, request: Envelope, reset: requests.Reset) -> Payload:
        task = await self.store.reset_task(
            reset.task_id, now=self._clock(), accounted_through=reset.accounted_through
        )
        return {"task": plain(task)}

    # ------------------------------------------------------------ executions

    @on_request(topics.STORE_EXECUTION_RECORD, read=requests.record)
    async def execution_record(self, request: Envelope, record: requests.Record) -> Payload:
        recorded = await self.store.record_execution(record.new, fence=record.fence)
        return {"execution": plain(recorded.record), "duplicate": recorded.duplicate}

    @on_request(topics.STORE_EXECUTION_RECORD_MANY, read=requests.record_many)
    async def execution_record_many(self, request: Envelope, many: requests.RecordMany) -> Payload:
        recorded = await self.store.record_fires(
            many.news, marks=many.marks, fence=many.fence, now=self._clock()
        )
        return {
            "executions": [
                {
                    "execution_id": r.record.execution_id,
                    "duplicate": r.duplicate,
                    "success": r.record.success,
                }
                for r in recorded
            ]
        }

    @on_request(topics.STORE_EXECUTION_FINISH_MANY, read=requests.finish_many)
    async def execution_finish_many(
        self, request: Envelope, finishes: tuple[tuple[str, ExecutionOutcome], ...]
    ) -> Payload:
        results = await self.store.finish_executions(finishes)
        replies: list[dict[str, Any]] = []
        for (execution_id, _), result in zip(finishes, results, strict=True):
            if isinstance(result, StoreError):
                error = {"code": error_code(result), "reason": str(result)}
                replies.append({"execution_id": execution_id, "error": error})
            else:
                replies.append({"execution_id": execution_id, "duplicate": result.duplicate})
        return {"executions": replies}

    @on_request(topics.STORE_EXECUTION_OUTCOMES, read=requests.execution_ids)
    async def execution_outcomes(self, request: Envelope, ids: tuple[str, ...]) -> Payload:
        return {"outcomes": await self.store.execution_outcomes(ids)}

    @on_request(topics.STORE_EXECUTION_FINISH, read=requests.finish)
    async def execution_finish(self, request: Envelope, finish: requests.Finish) -> Payload:
        recorded = await self.store.finish_execution(
            finish.execution_id, finish.outcome, fence=finish.fence
        )
        return {"execution": plain(recorded.record), "duplicate": recorded.duplicate}

    @on_request(topics.STORE_EXECUTION_GET, read=requests.execution_ref)
    async def execution_get(self, request: Envelope, execution_id: str) -> Payload:
        return {"execution": plain(await self.store.get_execution(execution_id))}

    @on_request(topics.STORE_EXECUTION_HISTORY, read=requests.history_page)
    async def execution_history(self, request: Envelope, page: requests.HistoryPage) -> Payload:
        found = await self.store.history(page.task_id, before=page.before, limit=page.limit)
        return self._page("executions", found)

    @on_request(topics.STORE_EXECUTION_UNSETTLED, read=requests.unsettled)
    async def execution_unsettled(self, request: Envelope, page: requests.Unsettled) -> Payload:
        found = await self.store.unsettled_executions(
            since=page.since, after=page.after, limit=page.limit
        )
        return self._page("executions", found)

    @on_request(topics.STORE_STATS, read=requests.stats)
    async def stats(self, request: Envelope, ask: requests.Stats) -> Payload:
        report = plain(await self.store.stats(since=ask.since, task_id=ask.task_id))
        if not ask.per_task:
            report.pop("tasks", None)  # thousands of tasks would not fit in one reply
        return report

    # ------------------------------------------------------------ dead letters, missed runs

    @on_request(topics.STORE_DEAD_LETTER_ADD, read=requests.dead_letter)
    async def dead_letter_add(self, request: Envelope, letter: NewDeadLetter) -> Payload:
        recorded = await self.store.add_dead_letter(letter)
        return {"dead_letter": plain(recorded.record), "duplicate": recorded.duplicate}

    @on_request(topics.STORE_DEAD_LETTERS, read=requests.dead_letter_page)
    async def dead_letters(self, request: Envelope, page: requests.DeadLetterPage) -> Payload:
        found = await self.store.dead_letters(
            task_id=page.task_id, before=page.before, limit=page.limit
        )
        return self._page("dead_letters", found)

    @on_request(topics.STORE_MISSED_RECORD, read=requests.missed)
    async def missed_record(self, request: Envelope, missed: requests.Missed) -> Payload:
        recorded = await self.store.record_missed(
            missed.task_id, missed.runs, now=self._clock(), fence=missed.fence, fired=missed.fired
        )
        return {"recorded": recorded}

    @on_request(topics.STORE_MISSED_LIST, read=requests.history_page)
    async def missed_list(self, request: Envelope, page: requests.HistoryPage) -> Payload:
        found = await self.store.missed_runs(page.task_id, before=page.before, limit=page.limit)
        return self._page("missed", found)

    # ------------------------------------------------------------ run steps

    @on_request(topics.STORE_STEP_PUT, read=requests.step_put)
    async def step_put(self, request: Envelope, put: requests.StepPut) -> Payload:
        recorded = await self.store.put_step(put.run_key, put.outcome)
        return {"step": plain(recorded.record), "duplicate": recorded.duplicate}

    @on_request(topics.STORE_STEP_LIST, read=requests.step_list)
    async def step_list(self, request: Envelope, run_key: str) -> Payload:
        return {"steps": [plain(step) for step in await self.store.run_steps(run_key)]}

    # ------------------------------------------------------------ durable runs
    # The instant a suspension is judged at (``at``) and ``now`` are the actor's clock.

    @on_request(topics.STORE_RUN_SUSPEND, read=requests.run_suspend)
    async def run_suspend(self, request: Envelope, ask: requests.Suspend) -> Payload:
        suspension = RunSuspension(
            run_key=ask.run_key,
            task_id=ask.task_id,
            scheduled_at=ask.scheduled_at,
            attempt=ask.attempt,
            wake_at=ask.wake_at,
            waiting=ask.waiting,
            consumed=ask.consumed,
            paused=ask.paused,
            at=self._clock(),
            answers=ask.answers,
        )
        return {"run": plain(await self.store.suspend_run(suspension))}

    @on_request(topics.STORE_RUN_WAKE, read=requests.run_ref)
    async def run_wake(self, request: Envelope, run_key: str) -> Payload:
        return {"run": _maybe(await self.store.wake_run(run_key, now=self._clock()))}

    @on_request(topics.STORE_RUN_SIGNAL_PUT, read=requests.run_signal_put)
    async def run_signal_put(self, request: Envelope, put: requests.SignalPut) -> Payload:
        signal, run = await self.store.put_signal(
            put.new, task_id=put.task_id, scheduled_at=put.scheduled_at
        )
        return {"signal": plain(signal), "run": plain(run)}

    @on_request(topics.STORE_RUN_SIGNAL_LIST, read=requests.run_ref)
    async def run_signal_list(self, request: Envelope, run_key: str) -> Payload:
        return {"signals": [plain(signal) for signal in await self.store.run_signals(run_key)]}

    @on_request(topics.STORE_RUN_CONTROL, read=requests.run_control)
    async def run_control(self, request: Envelope, ask: requests.Control) -> Payload:
        run, before = await self.store.control_run(
            ask.run_key,
            task_id=ask.task_id,
            scheduled_at=ask.scheduled_at,
            action=ask.action,
            reason=ask.reason,
            now=self._clock(),
        )
        return {"run": plain(run), "before": before}

    @on_request(topics.STORE_RUN_REOPEN, read=requests.run_reopen)
    async def run_reopen(self, request: Envelope, ask: requests.Reopen) -> Payload:
        run, deleted = await self.store.reopen_run(
            ask.run_key,
            task_id=ask.task_id,
            scheduled_at=ask.scheduled_at,
            from_step=ask.from_step,
            now=self._clock(),
        )
        return {"run": plain(run), "deleted_steps": list(deleted)}

    @on_request(topics.STORE_RUN_GET, read=requests.run_ref)
    async def run_get(self, request: Envelope, run_key: str) -> Payload:
        return {"run": plain(await self.store.get_run(run_key))}

    @on_request(topics.STORE_RUN_LIST, read=requests.run_page)
    async def run_list(self, request: Envelope, page: requests.RunPage) -> Payload:
        found = await self.store.list_runs(
            task_id=page.task_id,
            states=page.states,
            after=page.after,
            limit=page.limit,
            owner=page.owner,
        )
        return self._page("runs", found)

    @on_request(topics.STORE_RUN_SUSPENDED, read=requests.suspended_page)
    async def run_suspended(self, request: Envelope, page: requests.SuspendedPage) -> Payload:
        found = await self.store.suspended_runs(after=page.after, limit=page.limit)
        return self._page("runs", found)

    @on_request(topics.STORE_RUN_FINISH, read=requests.run_finish)
    async def run_finish(self, request: Envelope, finish: requests.RunFinish) -> Payload:
        run = await self.store.finish_run(
            finish.run_key,
            finish.state,
            reason=finish.reason,
            now=self._clock(),
            answers=finish.answers,
        )
        return {"run": _maybe(run)}

    @on_request(topics.STORE_RUN_ATTEMPT, read=requests.run_attempt)
    async def run_attempt(self, request: Envelope, ask: requests.Attempt) -> Payload:
        latest = await self.store.latest_attempt(ask.task_id, ask.scheduled_at)
        return {"execution": _maybe(latest)}

    @on_request(topics.STORE_RUN_CHILDREN, read=requests.run_parent)
    async def run_children(self, request: Envelope, parent_key: str) -> Payload:
        return {"runs": [plain(run) for run in await self.store.run_children(parent_key)]}

    @on_request(topics.STORE_RUN_STRANDED, read=requests.stranded_page)
    async def run_stranded(self, request: Envelope, page: requests.StrandedPage) -> Payload:
        found = await self.store.stranded_runs(after=page.after, limit=page.limit)
        return self._page("runs", found)

    # ------------------------------------------------------------ retention

    @on_request(topics.STORE_RETENTION_RUN, read=requests.retention)
    async def retention_run(self, request: Envelope, ask: requests.Retention) -> Payload:
        report = await self.store.run_retention(
            now=self._clock(),
            retention_days=ask.retention_days,
            max_executions=ask.max_executions,
        )
        return plain(report)

    # ------------------------------------------------------------ the lease
    # The holder is the one named, else the requester's authenticated identity.

    @on_request(topics.STORE_LEASE_ACQUIRE, read=requests.lease_acquire)
    async def lease_acquire(self, request: Envelope, ask: requests.LeaseAsk) -> Payload:
        holder = ask.holder or request.sender
        grant = await self.store.acquire_lease(ask.name, holder, ttl_s=ask.ttl_s, now=self._clock())
        lease = plain(grant.lease)
        if not grant.granted:
            lease.pop("token", None)  # a refused acquire learns who holds it, never its fence
        return {"granted": grant.granted, "lease": lease}

    @on_request(topics.STORE_LEASE_RENEW, read=requests.lease_renew)
    async def lease_renew(self, request: Envelope, ask: requests.LeaseAsk) -> Payload:
        holder = ask.holder or request.sender
        lease = await self.store.renew_lease(
            ask.name, holder, ask.token, ttl_s=ask.ttl_s, now=self._clock()
        )
        return {"lease": plain(lease)}

    @on_request(topics.STORE_LEASE_RELEASE, read=requests.lease_release)
    async def lease_release(self, request: Envelope, ask: requests.LeaseAsk) -> Payload:
        holder = ask.holder or request.sender
        released = await self.store.release_lease(ask.name, holder, ask.token, now=self._clock())
        return {"released": released}

    # ------------------------------------------------------------ maintenance

    @on_request(topics.STORE_INTEGRITY_CHECK, read=requests.nothing)
    async def integrity_check(self, request: Envelope, _: None) -> Payload:
        problems = await self._libsql().integrity_check()
        return {"ok": problems == ["ok"], "problems": [] if problems == ["ok"] else problems}

    @on_request(topics.STORE_VACUUM, read=requests.nothing)
    async def vacuum(self, request: Envelope, _: None) -> Payload:
        before, after = await self._libsql().vacuum()
        return {"pages_before": before, "pages_after": after}

    @on_request(topics.STORE_REKEY, read=requests.nothing)
    async def rekey(self, request: Envelope, _: None) -> Payload:
        """A new key for a store keyed by its ``master.key`` file; the backup goes beside the
        database (a path from the bus is never written to).
        """
        report = await self._libsql().rekey()
        return {
            "backup": str(report.backup),
            "backup_key_file": str(report.backup_key_file) if report.backup_key_file else None,
            "key_source": report.key_source,
        }

    def _libsql(self) -> LibsqlStore:
        if not isinstance(self.store, LibsqlStore):
            raise Refused("unsupported", f"{type(self.store).__name__} has no such command")
        return self.store

    # ------------------------------------------------------------ replies

    def _page(self, key: str, page: Page[Any]) -> Payload:
        """The page as ``{key: [...], "next_cursor": ...}``, cut short if it would not fit in
        ``max_reply_bytes`` (at least one item is always sent); with ``"unreadable": [...]``
        naming the rows left out because they cannot be read, if any.
        """
        items: list[dict[str, Any]] = []
        size = 0
        for item in page.items:
            rendered = plain(item)
            size += len(msgpack.packb(rendered, use_bin_type=True))
            if items and size > self._max_reply_bytes:
                break
            items.append(rendered)
        cut = page.cut(len(items))
        reply: Payload = {key: items, "next_cursor": cut.next_cursor}
        if isinstance(page, PartialPage) and page.unreadable:
            reply["unreadable"] = list(page.unreadable)
        return reply


def _maybe(record: Any) -> dict[str, Any] | None:
    return None if record is None else plain(record)
