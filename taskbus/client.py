"""The client API of a running taskbus: manage tasks, read their history, follow their events.

The CLI is built on it; a program in another process or on another host uses it the same way,
over tcp+CURVE (or ipc) as an identity whose keypair is in the keys directory::

    async with TaskbusClient.connect(load_settings()) as taskbus:
        await taskbus.create("user.reflect", "tasks.reminders:Reminder", "0 23 * * *")
        async for event in await taskbus.watch():
            print(event.topic, event.payload)

An application that embeds taskbus gets one over inproc from ``Taskbus.client()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from actors.storing import StoreClient
from actors.storing.wire import from_plain
from bus import AskTimeout, AuthError, BusClient, Envelope, KeysDirectory, NoResponder, RemoteError
from bus.envelope import Payload
from bus.errors import remote_error
from bus.subscription import Subscription
from config import topics
from config.bus import DEFAULT_MAX_MESSAGE_BYTES
from config.errors import TaskbusError
from config.paths import DEFAULT_ENDPOINT
from config.settings import Settings
from store.records import TaskRecord
from taskbus.batches import MAX_BATCH, REQUEST_SHARE, ApplyPlan, Created, batches
from taskbus.descriptions import TaskDescription

DEFAULT_TIMEOUT_S = 10.0
# How long connecting to the endpoint may take before it counts as nothing listening there: a
# refused connection fails at once, a dropped one after this.
PROBE_TIMEOUT_S = 1.0
HINT = "is taskbus running? start it with scripts/up (or taskbus up)"
# What `watch` follows by default: every task's life, dead letters, the scheduler's errors and
# health. A prefix also matches longer topics (``scheduler.health`` matches
# ``scheduler.health.check``, the health-check task's report).
WATCH_TOPICS = (topics.STATUS_EVENTS, topics.DEAD_EVENTS, topics.ERROR_EVENTS, topics.HEALTH)


class Unreachable(TaskbusError):
    """No running taskbus answered at the endpoint."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """What ``TaskbusClient.start`` started: the run ``run`` (its key, ``<task id>@<µs>``) of
    ``task_id``, whose first execution is ``execution_id``; ``duplicate`` when the start key had
    already started that run, so nothing new was started."""

    task_id: str
    execution_id: str
    run: str
    duplicate: bool = False

    @classmethod
    def read(cls, reply: Payload) -> Started:
        return cls(
            task_id=str(reply["task_id"]),
            execution_id=str(reply["execution_id"]),
            run=str(reply["run"]),
            duplicate=bool(reply.get("duplicate", False)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Backfilled:
    """What ``TaskbusClient.backfill`` did: of the ``instants`` of the task's schedule in
    ``[start, end]`` (``first`` to ``last``, None when there were none), it fired ``fired``; the
    other ``already`` had been recorded before (they ran, run or are held) and were not fired
    again. ``overlap``: the overlap rule the backfilled fires ran under."""

    task_id: str
    start: datetime
    end: datetime
    overlap: str
    instants: int
    fired: int
    already: int
    first: datetime | None
    last: datetime | None

    @classmethod
    def read(cls, reply: Payload) -> Backfilled:
        def instant(value: Any) -> datetime | None:
            return None if value is None else datetime.fromisoformat(str(value))

        return cls(
            task_id=str(reply["task_id"]),
            start=datetime.fromisoformat(str(reply["from"])),
            end=datetime.fromisoformat(str(reply["to"])),
            overlap=str(reply["overlap"]),
            instants=int(reply["instants"]),
            fired=int(reply["fired"]),
            already=int(reply["already"]),
            first=instant(reply.get("first")),
            last=instant(reply.get("last")),
        )


class TaskbusClient:
    """Asks the scheduler, the store and the health actor; every method returns the reply's
    payload, raises ``bus.RemoteError`` (a ``Refused``: ``code`` says which, ``invalid``,
    ``not_found``...; the message leads with the topic) for an error reply and Unreachable when
    nothing answered."""

    def __init__(
        self,
        client: BusClient,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        responder_wait_s: float = 0.0,
    ) -> None:
        """``timeout_s`` bounds each ask; ``responder_wait_s`` is how long an ask is retried
        while nothing serves its topic (``no_responder``): a scheduler takes the lease moments
        after ``taskbus up`` starts, a standby a lease TTL after its leader died."""
        self.bus = client
        self.timeout_s = timeout_s
        self.responder_wait_s = responder_wait_s
        # The store's maintenance, for admins (integrity check, rekey), as a typed client.
        self.store = StoreClient(self._envelope, timeout_s=timeout_s)

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        settings: Settings,
        *,
        identity: str = "cli",
        endpoint: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        responder_wait_s: float = 0.0,
    ) -> AsyncIterator[TaskbusClient]:
        """Connected to ``endpoint`` (default: ``default_endpoint(settings)``) as ``identity``;
        Unreachable within about a second if nothing listens there."""
        keys = KeysDirectory(settings.paths.keys_dir)
        target = endpoint or default_endpoint(settings)
        why = await _nothing_listens(target, min(timeout_s, PROBE_TIMEOUT_S))
        if why is not None:
            raise Unreachable(f"no taskbus answers at {target} ({why}): {HINT}")
        try:
            keypair, server_key = keys.identity_keypair(identity), keys.broker_public_key()
        except AuthError as exc:
            raise Unreachable(
                f"{exc} (has 'taskbus up' run with this data directory? on another host, "
                "see 'taskbus keys new' in docs/deployment.md)"
            ) from exc
        client = BusClient(
            target,
            identity=identity,
            keypair=keypair,
            server_key=server_key,
            settings=settings.bus,
        )
        try:
            await client.start(timeout=timeout_s)
        except (AuthError, TimeoutError, OSError) as exc:
            raise Unreachable(f"no taskbus answers at {target} ({exc}): {HINT}") from exc
        try:
            yield cls(client, timeout_s=timeout_s, responder_wait_s=responder_wait_s)
        finally:
            await client.stop()

    # ------------------------------------------------------------ tasks

    async def create(
        self,
        task_id: str,
        task_class: str,
        schedule: str,
        *,
        timezone: str | None = None,
        config: dict[str, Any] | None = None,
        enabled: bool = True,
        **policies: dict[str, Any],
    ) -> dict[str, Any]:
        """A new ``user.*`` task; ``policies``: ``misfire_policy``, ``retry_policy``,
        ``run_policy`` (docs/scheduling.md). Returns the stored task."""
        payload: dict[str, Any] = {
            "task_id": task_id,
            "task_class": task_class,
            "schedule": schedule,
            "enabled": enabled,
            **policies,
        }
        if timezone is not None:
            payload["timezone"] = timezone
        if config is not None:
            payload["config"] = config
        return await self._task(topics.TASK_CREATE, payload)

    async def schedule_task(
        self,
        title: str,
        schedule: str,
        recurring: bool = True,
        *,
        timezone: str | None = None,
        payload: Mapping[str, Any] | None = None,
        prompt: str | None = None,
        name: str | None = None,
    ) -> TaskRecord:
        """An agent's own task (``agent.task.schedule``): stored as ``agent.<this identity>.<name>``
        (``name``, or made from ``title``), owned by this identity, running the configured runner
        (``[agents] runner_class``) with ``title``, ``prompt`` and ``payload`` as its options; not
        ``recurring``: it fires once, at the schedule's next instant, then disables itself.
        RemoteError ``invalid`` (a field; a schedule firing more often than ``[agents]
        min_interval_s``), ``denied`` (the quota ``[agents] max_tasks_per_identity``; an identity
        that cannot name a namespace), ``exists`` (the name is taken)."""
        ask: dict[str, Any] = {"title": title, "schedule": schedule, "recurring": recurring}
        for field, value in (
            ("timezone", timezone),
            ("payload", None if payload is None else dict(payload)),
            ("prompt", prompt),
            ("name", name),
        ):
            if value is not None:
                ask[field] = value
        reply = await self.ask(topics.AGENT_TASK_SCHEDULE, ask)
        return from_plain(TaskRecord, reply["task"])

    async def create_many(
        self, tasks: Iterable[Mapping[str, Any]], *, batch: int = MAX_BATCH, in_flight: int = 4
    ) -> list[Created]:
        """New ``user.*`` tasks, each a ``create`` payload (``task_id``, ``task_class``,
        ``schedule``, and any of ``timezone``, ``config``, ``enabled`` and the policies), sent
        ``batch`` (at most 1,000; fewer if they would take more than a third of
        ``bus.max_message_bytes``) to a request, ``in_flight`` requests at a time; each stored in
        one write per request. One result per task, in order: a refused one (``invalid``,
        ``exists``...) does not stop the others."""
        if not 1 <= batch <= MAX_BATCH:
            raise ValueError(f"batch {batch}: expected 1..{MAX_BATCH}")
        items = [dict(task) for task in tasks]
        settings = getattr(self.bus, "settings", None)
        limit = getattr(settings, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)
        chunks = batches(items, count=batch, max_bytes=limit // REQUEST_SHARE)
        gate = asyncio.Semaphore(max(1, in_flight))

        async def send(chunk: list[dict[str, Any]]) -> list[Created]:
            async with gate:
                reply = await self.ask(topics.TASK_CREATE_MANY, {"tasks": chunk})
            return [Created.read(entry) for entry in reply["results"]]

        done = await asyncio.gather(*(send(chunk) for chunk in chunks))
        return [created for results in done for created in results]

    async def apply(
        self, tasks: Iterable[Mapping[str, Any]], *, prune: bool = False, dry_run: bool = False
    ) -> ApplyPlan:
        """Makes this identity's ``user.*`` tasks match ``tasks`` (``create`` payloads, at most
        1,000): creates the missing, updates the changed and, with ``prune``, deletes those not
        listed. The plan, with each entry's result unless ``dry_run`` (nothing changed then).
        A bad definition refuses the whole request (``invalid``, naming ``tasks[i]``)."""
        payload = {"tasks": [dict(task) for task in tasks], "prune": prune, "dry_run": dry_run}
        return ApplyPlan.read(await self.ask(topics.TASK_APPLY, payload))

    async def update(
        self, task_id: str, *, expected_version: int | None = None, **changes: Any
    ) -> dict[str, Any]:
        """Changes any create field but the id; the stored task with its version + 1."""
        payload = {"task_id": task_id, **changes}
        if expected_version is not None:
            payload["expected_version"] = expected_version
        return await self._task(topics.TASK_UPDATE, payload)

    async def delete(self, task_id: str) -> None:
        await self.ask(topics.TASK_DELETE, {"task_id": task_id})

    async def enable(self, task_id: str) -> dict[str, Any]:
        return await self._task(topics.TASK_ENABLE, {"task_id": task_id})

    async def disable(self, task_id: str) -> dict[str, Any]:
        return await self._task(topics.TASK_DISABLE, {"task_id": task_id})

    async def trigger(self, task_id: str) -> str:
        """Runs the task now, outside its schedule; the new execution's id."""
        reply = await self.ask(topics.TASK_TRIGGER, {"task_id": task_id})
        return str(reply["execution_id"])

    async def start(self, task_id: str, *, key: str | None = None) -> Started:
        """Runs the task now, as ``trigger``; with a start ``key`` (printable text, 1 to 200
        characters) at most once per key and task: a second start with the same key starts
        nothing and returns the first one's run, ``duplicate`` true (docs/runs.md)."""
        payload: dict[str, Any] = {"task_id": task_id}
        if key is not None:
            payload["key"] = key
        return Started.read(await self.ask(topics.TASK_TRIGGER, payload))

    async def backfill(
        self,
        task_id: str,
        start: datetime,
        end: datetime,
        *,
        overlap: str | None = None,
        timeout_s: float | None = None,
    ) -> Backfilled:
        """Fires every instant of the task's schedule in ``[start, end]`` (aware datetimes,
        ``start < end <= now``, at most 10,000 instants) once, with reason ``backfill``; an
        instant recorded before is not fired again. ``overlap`` (an overlap rule, default
        ``buffer_all``) applies to these fires instead of the task's. Refused ``invalid``,
        ``not_found``, ``denied`` (another identity's task) as ``RemoteError`` subclasses
        (docs/scheduling.md#backfill)."""
        payload: dict[str, Any] = {
            "task_id": task_id,
            "from": start.isoformat(),
            "to": end.isoformat(),
        }
        if overlap is not None:
            payload["overlap"] = overlap
        reply = await self._envelope(topics.TASK_BACKFILL, payload, timeout_s)
        return Backfilled.read(reply.payload)

    async def pause(self, task_id: str, *, note: str | None = None) -> dict[str, Any]:
        """The task stops firing until ``unpause``; ``note`` (printable, at most 500 characters)
        says why. The stored task, ``paused`` true. Refused ``invalid``, ``not_found``,
        ``denied`` (docs/scheduling.md#pausing-limited-runs-and-describe)."""
        payload: dict[str, Any] = {"task_id": task_id}
        if note is not None:
            payload["note"] = note
        return await self._task(topics.TASK_PAUSE, payload)

    async def unpause(self, task_id: str) -> dict[str, Any]:
        """The task fires again; the fires it owed while paused are recorded as one missed range
        (reason ``paused: <note>``), also in the returned task as ``missed`` (None if none)."""
        reply = await self.ask(topics.TASK_UNPAUSE, {"task_id": task_id})
        return {**dict(reply["task"]), "missed": reply.get("missed")}

    async def describe(
        self, task_id: str, *, count: int = 10, actions: int = 20
    ) -> TaskDescription:
        """The task's next ``count`` (1..100) fire times in its zone with DST notes, and its
        latest ``actions`` (0..100) actions with their reasons."""
        payload = {"task_id": task_id, "count": count, "actions": actions}
        return TaskDescription.read(await self.ask(topics.TASK_DESCRIBE, payload))

    async def reset(self, task_id: str) -> dict[str, Any]:
        """Forgets the last run: the next fire is the first after now, nothing counts as missed."""
        return await self._task(topics.TASK_RESET, {"task_id": task_id})

    async def get(self, task_id: str) -> dict[str, Any]:
        return await self._task(topics.TASK_GET, {"task_id": task_id})

    async def status(self, task_id: str) -> dict[str, Any]:
        """``{status, next_fire, pending_retries}`` (docs/protocol.md §13)."""
        return await self.ask(topics.TASK_STATUS, {"task_id": task_id})

    async def tasks(self, *, with_status: bool = False) -> list[dict[str, Any]]:
        """Every task, by id; with ``with_status`` each also has ``next_fire`` and ``status``."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            payload: dict[str, Any] = {"after": cursor, "limit": 100}
            if with_status:
                payload["with_status"] = True
            page = await self.ask(topics.TASK_LIST, payload)
            found.extend(page["tasks"])
            cursor = page["next_cursor"]
            if cursor is None:
                return found

    async def history(self, task_id: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The task's latest ``limit`` executions, latest first."""
        reply = await self.ask(topics.TASK_HISTORY, {"task_id": task_id, "limit": limit})
        return list(reply["executions"])

    async def missed(self, task_id: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The task's latest ``limit`` fires that did not run, latest first: ``first_at``,
        ``last_at``, ``count`` and ``reason`` each."""
        reply = await self.ask(topics.TASK_MISSED, {"task_id": task_id, "limit": limit})
        return list(reply["missed"])

    async def run(self, execution_id: str) -> dict[str, Any]:
        """``{run, steps}``: one execution with its logs, and its fire's steps in the order they
        were stored, each ``name``, ``status``, ``attempts``, ``started_at``, ``finished_at``,
        ``size``, ``error`` (no results). Refused ``not_found``, ``denied`` (another's task)."""
        return await self.ask(topics.RUN_GET, {"execution_id": execution_id})

    # ------------------------------------------------------------ durable runs

    async def signal(self, run: str, name: str, payload: Any = None) -> dict[str, Any]:
        """Puts signal ``name`` with ``payload`` (plain data) into the inbox of ``run`` (a run key
        ``<task id>@<µs>`` or the execution id of any of its attempts), waking the run if it
        waits for that name. ``{run, seq}``: the run as a map (docs/protocol.md §13) and the
        signal's number. Refused ``not_found``, ``conflict`` (the run has ended), ``invalid``
        (a bad name, a payload too big, a full inbox), ``denied`` (another's task)."""
        request: dict[str, Any] = {"run": run, "name": name}
        if payload is not None:
            request["payload"] = payload
        reply = await self.ask(topics.RUN_SIGNAL, request)
        return {"run": dict(reply["run"]), "seq": int(reply["seq"])}

    async def cancel_run(self, run: str, reason: str = "") -> dict[str, Any]:
        """Cancels ``run`` for good: a live attempt raises ``RunCancelled`` at once, a suspended
        run is never woken. Cancelling a cancelled run is a no-op; an ended one is ``conflict``.
        The run after."""
        request: dict[str, Any] = {"run": run}
        if reason:
            request["reason"] = reason
        return await self._run(topics.RUN_CANCEL, request)

    async def pause_run(self, run: str) -> dict[str, Any]:
        """Holds ``run``: it is not woken, and a live attempt suspends at its next step, sleep
        or wait. The run after (``paused`` true)."""
        return await self._run(topics.RUN_PAUSE, {"run": run})

    async def resume_run(self, run: str) -> dict[str, Any]:
        """Lets a paused ``run`` go on: woken now if its wake is due. The run after."""
        return await self._run(topics.RUN_RESUME, {"run": run})

    async def retry_run(self, run: str, *, from_step: str | None = None) -> dict[str, Any]:
        """Runs the ended ``run`` again as a new attempt of its fire (trigger ``retry``):
        from ``from_step`` on (that step and those stored after it run again, earlier ones
        are kept), or, without it, its failed steps only. A succeeded run is retried only from
        a step. ``{run, execution_id, deleted_steps}``: the run after (``running``), the new
        attempt's id and the steps deleted. Refused ``conflict`` (the run has not ended),
        ``not_found`` (an unknown run, or a step it never stored), ``denied``
        (docs/runs.md#retrying-a-run)."""
        request: dict[str, Any] = {"run": run}
        if from_step is not None:
            request["from_step"] = from_step
        reply = await self.ask(topics.RUN_RETRY, request)
        return {
            "run": reply.get("run"),
            "execution_id": reply.get("execution_id"),
            "deleted_steps": list(reply.get("deleted_steps") or ()),
        }

    async def runs(
        self, task_id: str | None = None, state: str | None = None, *, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """The runs that have a durable record (they slept, waited, were signalled, paused,
        cancelled or started with a key), by run key; those of ``task_id`` only, in ``state``
        only (``running``, ``sleeping``, ``waiting``, ``succeeded``, ``failed``,
        ``cancelled``) if given; at most ``limit`` (default: all). An admin sees every task's,
        anyone else their own tasks'."""
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        while limit is None or len(found) < limit:
            payload: dict[str, Any] = {"after": cursor, "limit": min(100, limit or 100)}
            if task_id is not None:
                payload["task_id"] = task_id
            if state is not None:
                payload["state"] = state
            page = await self.ask(topics.RUN_LIST, payload)
            found.extend(dict(run) for run in page["runs"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        return found if limit is None else found[:limit]

    async def run_tree(self, run: str) -> dict[str, Any]:
        """``{run, children}``: ``run`` (a run key or an execution id of any of its attempts)
        as a map, and the child runs it spawned (``ctx.spawn``), each ``{run, children}`` in
        turn, ten levels deep at most (docs/runs.md#child-runs)."""
        return await self.ask(topics.RUN_TREE, {"run": run})

    async def query(self, run: str, name: str) -> dict[str, Any]:
        """``{answer, live}``: what ``run``'s ``@query(name)`` answers. Asked of the live
        attempt if one holds the run (``live`` true, within about a second); else the answer
        it stored when it last suspended or finished (``live`` false). Refused ``not_found``
        when there is neither, ``denied`` (another's task) (docs/runs.md#queries)."""
        reply = await self.ask(topics.RUN_QUERY, {"run": run, "name": name})
        return {"answer": reply.get("answer"), "live": bool(reply.get("live", False))}

    async def update_run(self, run: str, name: str, payload: Any = None) -> dict[str, Any]:
        """Sends the update ``name`` with ``payload`` (plain data) to the live ``run``: its
        task's ``@update(name)`` validator may refuse it (``invalid``, nothing kept); accepted,
        it is kept in the run's inbox as the signal ``update:<name>`` and handled once.
        ``{run, seq, result}``: the run key, the kept signal's number and the handler's return
        value. Refused ``conflict`` (the run is not live), ``invalid`` (an unknown update, a
        refusal, a handler that failed), ``not_found``, ``denied`` (docs/runs.md#updates)."""
        request: dict[str, Any] = {"run": run, "name": name}
        if payload is not None:
            request["payload"] = payload
        reply = await self.ask(topics.RUN_UPDATE, request)
        return {"run": reply.get("run"), "seq": reply.get("seq"), "result": reply.get("result")}

    async def _run(self, topic: str, payload: Payload) -> dict[str, Any]:
        return dict((await self.ask(topic, payload))["run"])

    # ------------------------------------------------------------ the system

    async def stats(self, wait_s: float | None = None) -> dict[str, Any]:
        """``scheduler.stats``; waits up to ``wait_s`` (default ``responder_wait_s``) for a
        scheduler to lead."""
        return await self.ask(topics.SCHEDULER_STATS, wait_s=wait_s)

    async def health(self) -> dict[str, Any]:
        """``{status, actors}``: healthy, degraded or critical, with every actor's reasons."""
        return await self.ask(topics.HEALTH)

    async def watch(self, *prefixes: str) -> Subscription:
        """An async iterator of events on ``prefixes`` (default WATCH_TOPICS) until closed."""
        return await self.bus.subscribe(*(prefixes or WATCH_TOPICS))

    # ------------------------------------------------------------ any topic

    async def ask(
        self, topic: str, payload: Payload | None = None, *, wait_s: float | None = None
    ) -> dict[str, Any]:
        """The reply's payload; retried for up to ``wait_s`` (default ``responder_wait_s``)
        while nothing serves ``topic``."""
        reply = await self._envelope(topic, payload or {}, None, wait_s=wait_s)
        return dict(reply.payload)

    async def _envelope(
        self,
        topic: str,
        payload: Payload,
        timeout_s: float | None,
        *,
        wait_s: float | None = None,
    ) -> Envelope:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.responder_wait_s if wait_s is None else wait_s)
        while True:
            try:
                return await self.bus.ask(topic, payload, timeout_s or self.timeout_s)
            except NoResponder as exc:
                if loop.time() >= deadline:
                    raise Unreachable(f"nothing in the running taskbus answers {topic!r}") from exc
            except RemoteError as exc:
                raise remote_error(exc.code, exc.reason, topic=topic) from exc
            except AskTimeout as exc:
                raise Unreachable(str(exc)) from exc
            await asyncio.sleep(0.05)

    async def _task(self, topic: str, payload: Payload) -> dict[str, Any]:
        """The stored task; with ``warnings`` when the reply has some (a create or update whose
        class and options no executor could check)."""
        reply = await self.ask(topic, payload)
        task = dict(reply["task"])
        if reply.get("warnings"):
            task["warnings"] = list(reply["warnings"])
        return task


def default_endpoint(settings: Settings) -> str:
    """Where a client connects when not told: the first of ``bus.endpoints`` if they are
    configured (``$TASKBUS_ENDPOINT``, a config file) to other than the default; else, when
    ``taskbus up`` runs with this data directory (its ipc socket exists), that socket; else the
    default tcp endpoint."""
    socket = Path(settings.paths.ipc_endpoint.removeprefix("ipc://"))
    if settings.endpoints == (DEFAULT_ENDPOINT,) and socket.is_socket():
        return settings.paths.ipc_endpoint
    return settings.endpoints[0]


async def _nothing_listens(endpoint: str, timeout_s: float) -> str | None:
    """Why nothing accepts a connection at a tcp:// or ipc:// ``endpoint``; None if something
    does (whether it is a taskbus broker the HELLO then tells)."""
    opening: Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
    if endpoint.startswith("tcp://"):
        host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
        opening = asyncio.open_connection(host.strip("[]"), int(port))
    elif endpoint.startswith("ipc://"):
        opening = asyncio.open_unix_connection(endpoint.removeprefix("ipc://"))
    else:
        return None
    try:
        _, writer = await asyncio.wait_for(opening, timeout_s)
    except TimeoutError:
        return f"no connection within {timeout_s:g}s"
    except OSError as exc:
        return os.strerror(exc.errno).lower() if exc.errno else str(exc)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None
