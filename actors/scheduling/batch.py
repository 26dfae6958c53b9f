"""Serving ``scheduler.task.create_many`` and ``scheduler.task.apply``: many definitions in one
request, stored in one fenced write (``store.task.put_many``).

Each definition is read (``requests.read_create``), checked and compiled
(``TaskRequests.prepare_create`` / ``prepare_update``, then ``check_depends_on``) and, once
written, scheduled (``TaskRequests.settle``) exactly as ``scheduler.task.create`` and ``update``
do it one at a time: only the write is shared. A ``depends_on`` must name tasks stored before
the request (a task created in the same batch is not one yet).

- ``create_many``: every item is its own: one that is refused (invalid, denied, exists) has its
  error in its place of the reply, and the others are created. The owner is the requester.
- ``apply``: makes the requester's own ``user.*`` tasks match a list. The list is checked as a
  whole first (a bad item refuses the request, naming it, with nothing stored); the plan says,
  per id, ``create``, ``update`` (with the fields that change), ``unchanged``, and, with
  ``prune``, ``delete`` for each of the requester's tasks the list does not name. ``dry_run``
  answers the plan only; otherwise the creates and updates are written in one write, then the
  deletes are made (each as ``scheduler.task.delete``), and every entry of the plan carries its
  result. Another identity's tasks, code-defined tasks and child runs' tasks are never touched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

from actors.scheduling import definitions
from actors.scheduling.lease import LeaseKeeper
from actors.scheduling.requests import NewTask, Prepared, TaskRequests, created_over, read_create
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, flag, inside, strict
from bus import Refused
from bus.envelope import Payload
from config.sections import SchedulerSettings
from store.errors import Conflict, InvalidValue, LeaseLost, StoreError
from store.records import MAX_EXECUTION_BATCH, TaskRecord
from tasks.permissions import TaskPermissions, is_child_task

MAX_BATCH = MAX_EXECUTION_BATCH  # definitions in one request: one store write
LIST_PAGE = 1_000  # the requester's stored tasks, read this many at a time
Refusal = Callable[[Exception], Refused | None]  # the actor's: an error as its code, or None

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
UNCHANGED = "unchanged"


class Item(NamedTuple):
    """One entry of a ``create_many``: its definition, or why it cannot be read (``task_id``
    as asked, None if it is not text)."""

    task_id: str | None
    new: NewTask | None
    error: InvalidValue | None


class CreateMany(NamedTuple):
    items: tuple[Item, ...]


class Apply(NamedTuple):
    tasks: tuple[NewTask, ...]
    prune: bool
    dry_run: bool


# ------------------------------------------------------------------ readers


def _listed(name: str, value: Any, low: int) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise InvalidValue(name, f"expected a list, got {type(value).__name__}")
    if not low <= len(value) <= MAX_BATCH:
        raise InvalidValue(name, f"has {len(value)} entries, expected {low}..{MAX_BATCH}")
    return list(value)


def _item(entry: Any) -> Item:
    raw = entry.get("task_id") if isinstance(entry, Mapping) else None
    asked = raw if isinstance(raw, str) else None
    if not isinstance(entry, Mapping):
        return Item(None, None, InvalidValue("task", f"expected a map, got {type(entry).__name__}"))
    try:
        return Item(asked, read_create(entry), None)
    except InvalidValue as error:
        return Item(asked, None, error)


@strict
def read_create_many(request: Fields) -> CreateMany:
    """``tasks``: 1 to MAX_BATCH ``scheduler.task.create`` payloads; one that cannot be read is
    that item's error, not the request's."""
    entries = request.required("tasks", lambda name, value: _listed(name, value, 1))
    return CreateMany(tuple(_item(entry) for entry in entries))


def _definitions(name: str, value: Any) -> tuple[NewTask, ...]:
    """0 to MAX_BATCH create payloads with distinct ids; a bad one is named by its index."""
    read: list[NewTask] = []
    first: dict[str, int] = {}
    for index, entry in enumerate(_listed(name, value, 0)):
        at = f"{name}[{index}]"
        if not isinstance(entry, Mapping):
            raise InvalidValue(at, f"expected a map, got {type(entry).__name__}")
        with inside(at):
            new = read_create(entry)
        if new.task_id in first:
            raise InvalidValue(
                f"{at}.task_id", f"{new.task_id!r} is also {name}[{first[new.task_id]}]"
            )
        first[new.task_id] = index
        read.append(new)
    return tuple(read)


@strict
def read_apply(request: Fields) -> Apply:
    return Apply(
        request.required("tasks", _definitions),
        request.optional("prune", flag, False),
        request.optional("dry_run", flag, False),
    )


# ------------------------------------------------------------------ handlers


class TaskBatches:
    """What ``create_many`` and ``apply`` do; ``sender`` is the requester's identity."""

    def __init__(
        self,
        *,
        requests: TaskRequests,
        store: StoreClient,
        lease: LeaseKeeper,
        refusal: Refusal,
        settings: SchedulerSettings,
        permissions: TaskPermissions | None = None,
    ) -> None:
        self._requests = requests
        self._settings = settings
        self._store = store
        self._lease = lease
        self._refusal = refusal
        self._permissions = permissions or TaskPermissions()

    async def create_many(self, sender: str, many: CreateMany) -> Payload:
        results: list[dict[str, Any]] = [{} for _ in many.items]
        ready: list[tuple[int, Prepared]] = []
        for index, item in enumerate(many.items):
            if item.new is None:
                assert item.error is not None
                results[index] = self._failed(item.task_id, item.error)
                continue
            try:
                prepared = self._requests.prepare_create(sender, item.new)
                await self._requests.check_depends_on(sender, prepared)
                ready.append((index, prepared))
            except Exception as error:  # a refused item's; _failed raises any other
                results[index] = self._failed(item.new.task_id, error)
        for index, result in await self._write(ready):
            results[index] = result
        return {"results": results}

    async def apply(self, sender: str, ask: Apply) -> Payload:
        stored = await self._own_tasks(sender)
        plan: list[dict[str, Any]] = []
        ready: list[tuple[int, Prepared]] = []
        for index, new in enumerate(ask.tasks):
            current = stored.get(new.task_id)
            try:
                if current is None:
                    prepared = self._requests.prepare_create(sender, new)
                    await self._requests.check_depends_on(sender, prepared)
                    plan.append({"task_id": new.task_id, "action": CREATE})
                else:
                    changes = _changes(current, new, self._settings.default_timezone)
                    if not changes:
                        plan.append({"task_id": new.task_id, "action": UNCHANGED})
                        continue
                    prepared = self._requests.prepare_update(current, changes, current.version)
                    await self._requests.check_depends_on(sender, prepared, current)
                    names = sorted(changes)
                    plan.append({"task_id": new.task_id, "action": UPDATE, "changes": names})
            except InvalidValue as error:
                raise InvalidValue(f"tasks[{index}].{error.field}", error.problem) from error
            except Exception as error:
                refused = error if isinstance(error, Refused) else self._refusal(error)
                if refused is None:
                    raise
                raise Refused(refused.code, f"tasks[{index}]: {refused.reason}") from error
            ready.append((len(plan) - 1, prepared))
        wanted = {new.task_id for new in ask.tasks}
        if ask.prune:
            for task_id in sorted(set(stored) - wanted):
                plan.append({"task_id": task_id, "action": DELETE})
        reply: Payload = {"plan": plan, "dry_run": ask.dry_run, "counts": _counts(plan)}
        if ask.dry_run:
            return reply
        for index, result in await self._write(ready):
            if result.get("error", {}).get("code") == "exists":  # a create's id: not free
                result["error"]["reason"] = (
                    f"task {result['task_id']!r} exists but is not one of {sender!r}'s tasks "
                    "(another identity's, or created since the plan was made): apply creates "
                    "only ids that are free"
                )
            plan[index] |= result
        deletes = [entry for entry in plan if entry["action"] == DELETE]
        outcomes = await asyncio.gather(
            *(self._delete(sender, entry["task_id"]) for entry in deletes)
        )
        for deleted, result in zip(deletes, outcomes, strict=True):
            deleted.update(result)
        for entry in plan:
            entry.setdefault("ok", True)  # unchanged
        reply["failed"] = sum(not entry["ok"] for entry in plan)
        return reply

    # ------------------------------------------------------------ the write

    async def _write(self, ready: Sequence[tuple[int, Prepared]]) -> list[tuple[int, Payload]]:
        """The prepared definitions in one fenced write; each one's result, by its index."""
        if not ready:
            return []
        puts = [(prepared.spec, prepared.expected_version) for _, prepared in ready]
        outcomes = await self._store.put_tasks(puts, fence=self._lease.fence)
        results: list[tuple[int, Payload]] = []
        for (index, prepared), outcome in zip(ready, outcomes, strict=True):
            if isinstance(outcome, LeaseLost):
                raise outcome
            task_id = prepared.spec.task_id
            if isinstance(outcome, StoreError):
                error: Exception = outcome
                if prepared.expected_version == 0 and isinstance(outcome, Conflict):
                    error = created_over(task_id, outcome)
                results.append((index, self._failed(task_id, error)))
                continue
            settled = await self._requests.settle(prepared, outcome)
            results.append((index, {"task_id": task_id, "ok": True, **settled}))
        return results

    async def _delete(self, sender: str, task_id: str) -> Payload:
        try:
            await self._requests.delete(sender, task_id)
        except Exception as error:  # a refused delete's; _failed raises any other
            return self._failed(task_id, error)
        return {"ok": True}

    def _failed(self, task_id: str | None, error: Exception) -> dict[str, Any]:
        """An item's refusal as ``{task_id, ok: false, error: {code, reason}}``; an error that is
        not the item's (the store or the bus failing) raises, refusing the request."""
        refused = error if isinstance(error, Refused) else self._refusal(error)
        if refused is None or refused.code == "unavailable":
            raise error
        return {
            "task_id": task_id,
            "ok": False,
            "error": {"code": refused.code, "reason": refused.reason},
        }

    async def _own_tasks(self, sender: str) -> dict[str, TaskRecord]:
        """The requester's stored tasks that ``apply`` manages: theirs (by owner, admins too),
        of a category defined over the bus, not a child run's."""
        found: dict[str, TaskRecord] = {}
        cursor: str | None = None
        while True:
            page = await self._store.list_tasks(after=cursor, limit=LIST_PAGE, owner=sender)
            for record in page.items:
                if self._permissions.creatable_over_bus(record.task_id) and not is_child_task(
                    record.task_id
                ):
                    found[record.task_id] = record
            cursor = page.next_cursor
            if cursor is None:
                return found


def _changes(stored: TaskRecord, new: NewTask, default_timezone: str) -> dict[str, Any]:
    """The definition's fields whose value in ``new`` differs from the stored one's."""
    wanted = {
        "task_class": new.task_class,
        "schedule": new.schedule,
        "timezone": new.timezone or default_timezone,
        "config": new.config,
        "enabled": new.enabled,
        "misfire_policy": new.misfire_policy,
        "retry_policy": new.retry_policy,
        "run_policy": new.run_policy,
    }
    assert set(wanted) == set(definitions.EDITABLE)
    return {name: value for name, value in wanted.items() if getattr(stored, name) != value}


def _counts(plan: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    counts = dict.fromkeys((CREATE, UPDATE, DELETE, UNCHANGED), 0)
    for entry in plan:
        counts[entry["action"]] += 1
    return counts
