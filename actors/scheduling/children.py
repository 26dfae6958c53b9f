"""Serving ``scheduler.exec.spawn`` and ``scheduler.exec.answer`` (executors only), and
``scheduler.run.tree`` and ``scheduler.run.query`` (a run's owner, the admins): child runs and
queries, each request's reader beside.

A spawn makes a child run of a parent run: its task ``<category>.child_<16 hex>`` (the hex of
sha256 of ``<parent run key>|<key>``, so one task per parent run and key) is created if absent
(the parent task's owner, schedule ``@yearly``, never enabled: it runs only the fire its spawn
makes), then fired once with start key ``spawn``: a second spawn of the same key is a duplicate
and answers the first run. The class's category is the one whose executors announced it (the
parent's first). The child's end reaches its parent's inbox as ``child:<key>``
(``RunRequests.child_ended``).

A query is asked of the live run (``live_asks.LiveAsks``: pushed, kind ``query``, to the
executors of the run's category; the one holding the run answers ``scheduler.exec.answer``).
Without an answer within QUERY_WAIT_S on the scheduler's clock, the answer the run stored with
its last suspend or finish is given (``live`` false).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, NamedTuple

from actors.scheduling import definitions
from actors.scheduling.catalogue import Catalogue
from actors.scheduling.firing import Firing
from actors.scheduling.live_asks import LIVE_WAIT_S, AnswerAsk, LiveAsks, read_answer
from actors.scheduling.owners import ADMIN_ROLE, EXECUTOR_ROLE, Owners
from actors.scheduling.protocol import RunPush
from actors.scheduling.runs import Publish, Run, RunRequests, run_name
from actors.storing import fields
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from actors.storing.wire import plain
from bus.envelope import Payload
from config.sections import SchedulerSettings
from scheduler import Clock
from store.errors import Conflict, InvalidValue, NotFound
from store.records import RunRecord, TaskSpec, run_key, signal_name
from tasks.errors import TaskPermissionError
from tasks.permissions import CHILD_MARK, TaskPermissions, category_of

SPAWN_START_KEY = "spawn"  # the start key of a child run's one fire
CHILD_SCHEDULE = "@yearly"  # a child task's schedule (it is never enabled)
PARENT_CANCEL = ("cancel", "abandon")  # what a parent's cancel does to a child
MAX_TREE_DEPTH = 10  # levels of children a run tree shows
QUERY_WAIT_S = LIVE_WAIT_S  # for a live answer, on the scheduler's clock

# AnswerAsk and read_answer (scheduler.exec.answer) live in live_asks; still importable here.
__all__ = ["AnswerAsk", "Children", "QueryAsk", "SpawnAsk", "read_answer"]


# ------------------------------------------------------------------ readers


class SpawnAsk(NamedTuple):
    parent_run: str
    key: str
    task_class: str
    config: dict[str, Any]
    on_parent_cancel: str


class QueryAsk(NamedTuple):
    run: str
    name: str


def spawn_key(name: str, value: Any) -> str:
    """A child's key in its parent: printable text, 1..100 characters (a signal name's rule:
    the parent waits for ``child:<key>``)."""
    checked = signal_name(name, value)
    signal_name(name, f"child:{checked}")
    return checked


def parent_cancel(name: str, value: Any) -> str:
    checked = fields.text(name, value)
    if checked not in PARENT_CANCEL:
        raise InvalidValue(name, f"{checked!r}: expected one of {', '.join(PARENT_CANCEL)}")
    return checked


def _anything(name: str, value: Any) -> Any:
    return value


@strict
def read_spawn(request: Fields) -> SpawnAsk:
    return SpawnAsk(
        request.required("parent_run", run_name),
        request.required("key", spawn_key),
        request.required("task_class", fields.text),
        request.optional("config", fields.mapping, {}),
        request.optional("on_parent_cancel", parent_cancel, "cancel"),
    )


@strict
def read_query(request: Fields) -> QueryAsk:
    return QueryAsk(request.required("run", run_name), request.required("name", signal_name))


def child_task_id(category: str, parent_key: str, key: str) -> str:
    digest = hashlib.sha256(f"{parent_key}|{key}".encode()).hexdigest()[:16]
    return f"{category}{CHILD_MARK}{digest}"


# ------------------------------------------------------------------ handlers


class Children:
    """What the child-run and query requests do; ``sender`` is the requester's identity."""

    def __init__(
        self,
        *,
        store: StoreClient,
        owners: Owners,
        catalogue: Catalogue,
        firing: Firing,
        runs: RunRequests,
        publish: Publish,
        clock: Clock,
        settings: SchedulerSettings,
        asks: LiveAsks | None = None,
    ) -> None:
        """``asks``: the live asks it shares with the updates (its own if None)."""
        self._store = store
        self._owners = owners
        self._catalogue = catalogue
        self._firing = firing
        self._runs = runs
        self._publish = publish
        self._clock = clock
        self._settings = settings
        self.asks = asks if asks is not None else LiveAsks(publish=publish, clock=clock)

    def _executor(self, sender: str, what: str) -> None:
        roles = self._owners.roles
        if not (roles.has(EXECUTOR_ROLE, sender) or roles.has(ADMIN_ROLE, sender)):
            raise TaskPermissionError(f"{sender!r} may not {what}: only executors may")

    # ------------------------------------------------------------ spawn

    async def spawn(self, sender: str, ask: SpawnAsk) -> Payload:
        """Create the child's task if absent and fire its one run (a duplicate: the first)."""
        self._executor(sender, "spawn a child run")
        parent = await self._runs.resolve(ask.parent_run)
        try:
            parent_task = await self._store.get_task(parent.task_id)
        except NotFound as error:
            raise NotFound(f"parent run {ask.parent_run!r} not found: its task is gone") from error
        category = self._category(ask.task_class, category_of(parent.task_id))
        TaskPermissions().check_spawnable(parent.task_id, category)
        task_id = child_task_id(category, parent.key, ask.key)
        self._catalogue.check(task_id, ask.task_class, ask.config)  # options, as a create
        spec = TaskSpec(
            task_id=task_id,
            task_class=ask.task_class,
            schedule=CHILD_SCHEDULE,
            config=ask.config,
            enabled=False,
            owner=parent_task.owner,
        )
        try:
            record = (await self._store.put_task(spec, expected_version=0)).record
        except Conflict:  # made by the first spawn of this key
            record = await self._store.get_task(task_id)
        task = definitions.compile_task(record, self._settings)
        fired = await self._firing.start(
            task,
            self._clock.wall(),
            attempt=1,
            reason="trigger",
            start_key=SPAWN_START_KEY,
            parent_key=parent.key,
            spawn_key=ask.key,
            on_parent_cancel=ask.on_parent_cancel,
        )
        instant = fired.fire.instant
        if fired.stored.duplicate:
            instant = (await self._store.get_execution(fired.execution_id)).scheduled_at
        return {
            "task_id": task_id,
            "run": run_key(task_id, instant),
            "execution_id": fired.execution_id,
            "duplicate": fired.stored.duplicate,
        }

    def _category(self, task_class: str, parent_category: str) -> str:
        """The category whose executors announced ``task_class`` (the parent's first)."""
        categories = [parent_category] + [
            c for c in self._catalogue.categories() if c != parent_category
        ]
        for category in categories:
            if task_class in (self._catalogue.classes(category) or {}):
                return category
        raise InvalidValue(
            "task_class", f"{task_class!r} is not a task class of any executor up (announced)"
        )

    # ------------------------------------------------------------ the tree

    async def tree(self, sender: str, name: str) -> Payload:
        """The run and its children, theirs in turn, MAX_TREE_DEPTH levels deep at most."""
        run = await self._runs.readable(sender, name, "read")
        if run.row is not None:
            root: dict[str, Any] = plain(run.row)
        else:
            root = {
                "run_key": run.key,
                "task_id": run.task_id,
                "scheduled_at": run.scheduled_at.isoformat(),
                "state": await self._runs.state_of(run),
            }
        return {"run": root, "children": await self._children(run.key, 1)}

    async def _children(self, key: str, depth: int) -> list[dict[str, Any]]:
        if depth > MAX_TREE_DEPTH:
            return []
        rows: tuple[RunRecord, ...] = await self._store.run_children(key)
        return [
            {"run": plain(row), "children": await self._children(row.run_key, depth + 1)}
            for row in rows
        ]

    # ------------------------------------------------------------ queries

    async def query(self, sender: str, ask: QueryAsk) -> Payload:
        """The live answer of the executor holding the run, else the stored one."""
        run = await self._runs.readable(sender, ask.run, "query")
        live = await self.asks.ask(
            run.task_id,
            lambda ask_id: RunPush(run_key=run.key, kind="query", query_id=ask_id, name=ask.name),
            wait_s=QUERY_WAIT_S,
        )
        if live is not None:
            if live.error is not None:
                raise InvalidValue(
                    "name", f"run {run.key} could not answer query {ask.name!r}: {live.error}"
                )
            return {"answer": live.answer, "live": True}
        return {"answer": await self._stored(run, ask.name), "live": False}

    async def _stored(self, run: Run, name: str) -> Any:
        try:
            row = await self._store.get_run(run.key)
        except NotFound:
            row = None
        answers: Mapping[str, Any] = (row.answers if row is not None else None) or {}
        if name not in answers:
            raise NotFound(f"run {run.key} has no stored answer to query {name!r}")
        return answers[name]

    def answer(self, sender: str, ask: AnswerAsk) -> Payload:
        """An executor's answer to a query or an update still waited for (a late one is not
        taken)."""
        self._executor(sender, "answer a query")
        return self.asks.answer(ask)
