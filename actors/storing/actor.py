"""StoreActor: the store on the bus, answering ``store.*`` requests.

Every request is read strictly (``actors.store.payloads``): a missing, mistyped or unknown field is
refused with code ``invalid`` and a reason naming the field, before anything is written. Store
errors become codes too: ``not_found``, ``conflict``, ``lease_lost``, ``store_error``;
``unknown_topic`` for a ``store.`` topic nobody answers. Topics and payloads: docs/store.md.

Many requests are handled at once (``concurrency``), so that writes arriving together share one
group commit; a write is answered only once it is committed. Times that matter (task updates,
leases, retention) come from the actor's ``clock``, never from the requester.

Health: the actor reports ``critical`` while its store cannot read (part of) its file and
``degraded`` while the file refuses writes (``LibsqlStore.critical``/``degraded``), and dies,
so that its supervisor restarts it, when the store's database thread has died.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgpack

from actors.actor import Actor, RequestRefused, on_request
from actors.store import payloads
from actors.store.errors import Conflict, InvalidValue, LeaseLost, NotFound, StoreError
from actors.store.libsql_store import LibsqlStore
from actors.store.payloads import Fields, plain
from actors.store.records import NewExecution, Page, RunMark
from actors.store.salvage import PartialPage
from actors.store.store import Store
from bus import Envelope
from bus.envelope import Payload

T = TypeVar("T")
Handler = Callable[[Envelope, Fields], Awaitable[Payload]]
DEFAULT_REPLY_BYTES = 512 * 1024


def utc_now() -> datetime:
    return datetime.now(UTC)


class StoreActor(Actor):
    """Serves ``store`` over the bus; opens it on start and closes it on stop."""

    name = "store"
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
        self._handlers: dict[str, Handler] = {
            "store.task.put": self._task_put,
            "store.task.get": self._task_get,
            "store.task.list": self._task_list,
            "store.task.delete": self._task_delete,
            "store.task.status": self._task_status,
            "store.task.mark_run": self._task_mark_run,
            "store.task.reset": self._task_reset,
            "store.execution.record": self._execution_record,
            "store.execution.record_many": self._execution_record_many,
            "store.execution.finish": self._execution_finish,
            "store.execution.finish_many": self._execution_finish_many,
            "store.execution.get": self._execution_get,
            "store.execution.outcomes": self._execution_outcomes,
            "store.execution.history": self._execution_history,
            "store.execution.unsettled": self._execution_unsettled,
            "store.stats": self._stats,
            "store.dead_letter.add": self._dead_letter_add,
            "store.dead_letters": self._dead_letters,
            "store.missed.record": self._missed_record,
            "store.missed.list": self._missed_list,
            "store.retention.run": self._retention_run,
            "store.lease.acquire": self._lease_acquire,
            "store.lease.renew": self._lease_renew,
            "store.lease.release": self._lease_release,
            "store.maintenance.integrity_check": self._integrity_check,
            "store.maintenance.rekey": self._rekey,
            "store.maintenance.vacuum": self._vacuum,
        }

    @property
    def topics(self) -> tuple[str, ...]:
        return tuple(self._handlers)

    async def on_start(self) -> None:
        await self.store.start()

    async def on_stop(self) -> None:
        await self.store.close()

    # ------------------------------------------------------------ health

    async def run(self) -> None:
        """Dies (the supervisor restarts the actor, which reopens the file) once the store's
        database thread has died: every request would fail from then on."""
        if isinstance(self.store, LibsqlStore):
            raise await self.store.serving()

    def critical(self) -> list[str]:
        return self.store.critical() if isinstance(self.store, LibsqlStore) else []

    def degraded(self) -> list[str]:
        return self.store.degraded() if isinstance(self.store, LibsqlStore) else []

    @on_request("store.")
    async def serve(self, request: Envelope) -> Payload:
        handler = self._handlers.get(request.topic)
        if handler is None:
            raise RequestRefused("unknown_topic", f"the store does not answer {request.topic!r}")
        try:
            return await handler(request, Fields(request.payload))
        except StoreError as exc:
            raise RequestRefused(error_code(exc), str(exc)) from exc

    # ------------------------------------------------------------ tasks

    async def _task_put(self, request: Envelope, fields: Fields) -> Payload:
        spec = payloads.task_spec(fields)
        expected = fields.optional("expected_version", payloads.count, None)
        fields.done()
        put = await self.store.put_task(spec, now=self._clock(), expected_version=expected)
        return {"task": plain(put.record), "duplicate": put.duplicate}

    async def _task_get(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        fields.done()
        return {"task": plain(await self.store.get_task(task_id))}

    async def _task_list(self, request: Envelope, fields: Fields) -> Payload:
        after = fields.optional("after", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 100)
        owner = fields.optional("owner", payloads.any_text, None)
        fields.done()
        page = await self.store.list_tasks(after=after, limit=limit, owner=owner)
        return self._page("tasks", page)

    async def _task_delete(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        fields.done()
        return {"deleted": await self.store.delete_task(task_id)}

    async def _task_status(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        fields.done()
        return {"status": plain(await self.store.task_status(task_id))}

    async def _task_mark_run(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        last_run = fields.optional("last_run", payloads.instant, None)
        next_run = fields.optional("next_run", payloads.instant, None)
        fields.done()
        task = await self.store.mark_run(
            task_id, last_run=last_run, next_run=next_run, now=self._clock()
        )
        return {"task": plain(task)}

    async def _task_reset(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        through = fields.optional("accounted_through", payloads.instant, None)
        fields.done()
        task = await self.store.reset_task(task_id, now=self._clock(), accounted_through=through)
        return {"task": plain(task)}

    # ------------------------------------------------------------ executions

    async def _execution_record(self, request: Envelope, fields: Fields) -> Payload:
        new = payloads.new_execution(fields)
        fence = fields.optional("fence", payloads.fence, None)
        fields.done()
        recorded = await self.store.record_execution(new, fence=fence)
        return {"execution": plain(recorded.record), "duplicate": recorded.duplicate}

    async def _execution_record_many(self, request: Envelope, fields: Fields) -> Payload:
        no_news: tuple[NewExecution, ...] = ()
        no_marks: tuple[RunMark, ...] = ()
        news = fields.optional("executions", payloads.new_execution_entries, no_news)
        marks = fields.optional("marks", payloads.run_mark_entries, no_marks)
        fence = fields.optional("fence", payloads.fence, None)
        fields.done()
        recorded = await self.store.record_fires(news, marks=marks, fence=fence, now=self._clock())
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

    async def _execution_finish_many(self, request: Envelope, fields: Fields) -> Payload:
        finishes = fields.required("executions", payloads.finish_entries)
        fields.done()
        results = await self.store.finish_executions(finishes)
        replies: list[dict[str, Any]] = []
        for (execution_id, _), result in zip(finishes, results, strict=True):
            if isinstance(result, StoreError):
                error = {"code": error_code(result), "reason": str(result)}
                replies.append({"execution_id": execution_id, "error": error})
            else:
                replies.append({"execution_id": execution_id, "duplicate": result.duplicate})
        return {"executions": replies}

    async def _execution_outcomes(self, request: Envelope, fields: Fields) -> Payload:
        ids = fields.required("execution_ids", payloads.identifiers)
        fields.done()
        return {"outcomes": await self.store.execution_outcomes(ids)}

    async def _execution_finish(self, request: Envelope, fields: Fields) -> Payload:
        execution_id = fields.required("execution_id", payloads.identifier)
        outcome = payloads.outcome(fields, required=True)
        fence = fields.optional("fence", payloads.fence, None)
        fields.done()
        assert outcome is not None
        recorded = await self.store.finish_execution(execution_id, outcome, fence=fence)
        return {"execution": plain(recorded.record), "duplicate": recorded.duplicate}

    async def _execution_get(self, request: Envelope, fields: Fields) -> Payload:
        execution_id = fields.required("execution_id", payloads.identifier)
        fields.done()
        return {"execution": plain(await self.store.get_execution(execution_id))}

    async def _execution_history(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        before = fields.optional("before", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 50)
        fields.done()
        page = await self.store.history(task_id, before=before, limit=limit)
        return self._page("executions", page)

    async def _execution_unsettled(self, request: Envelope, fields: Fields) -> Payload:
        since = fields.optional("since", payloads.instant, None)
        after = fields.optional("after", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 100)
        fields.done()
        page = await self.store.unsettled_executions(since=since, after=after, limit=limit)
        return self._page("executions", page)

    async def _stats(self, request: Envelope, fields: Fields) -> Payload:
        since = fields.optional("since", payloads.instant, None)
        task_id = fields.optional("task_id", payloads.identifier, None)
        per_task = fields.optional("per_task", payloads.flag, True)
        fields.done()
        report = plain(await self.store.stats(since=since, task_id=task_id))
        if not per_task:
            report.pop("tasks", None)  # thousands of tasks would not fit in one reply
        return report

    # ------------------------------------------------------------ dead letters, missed runs

    async def _dead_letter_add(self, request: Envelope, fields: Fields) -> Payload:
        letter = payloads.new_dead_letter(fields)
        fields.done()
        recorded = await self.store.add_dead_letter(letter)
        return {"dead_letter": plain(recorded.record), "duplicate": recorded.duplicate}

    async def _dead_letters(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.optional("task_id", payloads.identifier, None)
        before = fields.optional("before", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 50)
        fields.done()
        page = await self.store.dead_letters(task_id=task_id, before=before, limit=limit)
        return self._page("dead_letters", page)

    async def _missed_record(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        runs = fields.required("runs", payloads.missed_runs)
        fence = fields.optional("fence", payloads.fence, None)
        fields.done()
        recorded = await self.store.record_missed(task_id, runs, now=self._clock(), fence=fence)
        return {"recorded": recorded}

    async def _missed_list(self, request: Envelope, fields: Fields) -> Payload:
        task_id = fields.required("task_id", payloads.identifier)
        before = fields.optional("before", payloads.text, None)
        limit = fields.optional("limit", payloads.positive, 50)
        fields.done()
        page = await self.store.missed_runs(task_id, before=before, limit=limit)
        return self._page("missed", page)

    # ------------------------------------------------------------ retention

    async def _retention_run(self, request: Envelope, fields: Fields) -> Payload:
        days = fields.optional("retention_days", payloads.seconds, None)
        keep = fields.optional("max_executions", payloads.positive, None)
        fields.done()
        report = await self.store.run_retention(
            now=self._clock(), retention_days=days, max_executions=keep
        )
        return plain(report)

    # ------------------------------------------------------------ the lease

    def _holder(self, request: Envelope, fields: Fields) -> str:
        """The ``holder`` named, else the requester's authenticated identity."""
        return fields.optional("holder", payloads.identifier, request.sender)

    async def _lease_acquire(self, request: Envelope, fields: Fields) -> Payload:
        name = fields.required("name", payloads.identifier)
        holder = self._holder(request, fields)
        ttl_s = fields.required("ttl_s", payloads.seconds)
        fields.done()
        grant = await self.store.acquire_lease(name, holder, ttl_s=ttl_s, now=self._clock())
        lease = plain(grant.lease)
        if not grant.granted:
            lease.pop("token", None)  # a refused acquire learns who holds it, never its fence
        return {"granted": grant.granted, "lease": lease}

    async def _lease_renew(self, request: Envelope, fields: Fields) -> Payload:
        name = fields.required("name", payloads.identifier)
        holder = self._holder(request, fields)
        token = fields.required("token", payloads.positive)
        ttl_s = fields.required("ttl_s", payloads.seconds)
        fields.done()
        lease = await self.store.renew_lease(name, holder, token, ttl_s=ttl_s, now=self._clock())
        return {"lease": plain(lease)}

    async def _lease_release(self, request: Envelope, fields: Fields) -> Payload:
        name = fields.required("name", payloads.identifier)
        holder = self._holder(request, fields)
        token = fields.required("token", payloads.positive)
        fields.done()
        released = await self.store.release_lease(name, holder, token, now=self._clock())
        return {"released": released}

    # ------------------------------------------------------------ maintenance

    async def _integrity_check(self, request: Envelope, fields: Fields) -> Payload:
        fields.done()
        problems = await self._libsql().integrity_check()
        return {"ok": problems == ["ok"], "problems": [] if problems == ["ok"] else problems}

    async def _vacuum(self, request: Envelope, fields: Fields) -> Payload:
        fields.done()
        before, after = await self._libsql().vacuum()
        return {"pages_before": before, "pages_after": after}

    async def _rekey(self, request: Envelope, fields: Fields) -> Payload:
        """A new key for a store keyed by its ``master.key`` file; the backup goes beside the
        database (a path from the bus is never written to).
        """
        fields.done()
        report = await self._libsql().rekey()
        return {
            "backup": str(report.backup),
            "backup_key_file": str(report.backup_key_file) if report.backup_key_file else None,
            "key_source": report.key_source,
        }

    def _libsql(self) -> LibsqlStore:
        if not isinstance(self.store, LibsqlStore):
            raise RequestRefused("unsupported", f"{type(self.store).__name__} has no such command")
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


_CODES: tuple[tuple[type[StoreError], str], ...] = (
    (InvalidValue, "invalid"),
    (NotFound, "not_found"),
    (LeaseLost, "lease_lost"),
    (Conflict, "conflict"),
)


def error_code(error: StoreError) -> str:
    """The error code a store failure is answered with (``store_error`` for any other)."""
    return next((code for kind, code in _CODES if isinstance(error, kind)), "store_error")
