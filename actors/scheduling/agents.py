"""Serving ``agent.task.schedule``: an agent schedules its own work, in its own namespace, under
its quota (docs/scheduling.md#agents-schedule-their-own-work).

The asker names a title, a schedule and whether it recurs; the scheduler names the task
``agent.<identity>.<name>`` (``name`` given, or made from the title), gives it the configured
runner class (``[agents] runner_class``: no agent names code) and the asker as owner, and stores
it with ``scheduler.task.create``'s one write. A task that does not recur gets
``run_policy.max_runs = 1``: it fires once, at its schedule's next instant, then disables itself.

Refused: an identity that cannot name a namespace (a ``-`` in it, a part named like a task field
or ``child_...``: ``denied``); a schedule firing more often than ``[agents] min_interval_s``
(``invalid``); an identity holding ``[agents] max_tasks_per_identity`` agent tasks (``denied``;
one lock makes the count and the write of concurrent asks one after the other, so racing asks
cannot pass it). Afterwards the owner manages the task with ``scheduler.task.*`` like any other
(the ownership checks of ``requests``); ``AgentRules.check_change`` keeps an update of an agent
task within the same rules: no other class, no policy maps, the schedule's interval and the
runner's options checked again.
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Mapping
from typing import Any, NamedTuple

from actors.scheduling import definitions
from actors.scheduling.catalogue import Catalogue
from actors.scheduling.definitions import compile_definition
from actors.scheduling.requests import NewTask, TaskExists, TaskRequests
from actors.storing import fields
from actors.storing.client import StoreClient
from actors.storing.fields import Fields, strict
from bus.envelope import Payload
from config.agents import AgentSettings
from config.errors import ConfigError, ScheduleSyntaxError
from config.schedules import parse_schedule_spec
from config.sections import TASK_FIELDS, SchedulerSettings, check_task_id
from scheduler.spacing import shortest_gap_s
from store import values
from store.errors import Conflict, InvalidValue, LeaseLost
from store.records import TaskRecord, TaskSpec
from tasks.agent_runner import MAX_PROMPT_CHARS, MAX_TITLE_CHARS
from tasks.errors import TaskPermissionError
from tasks.permissions import AGENT_CATEGORY, CHILD_MARK

NAMESPACE = f"{AGENT_CATEGORY}."  # every agent task id starts so
MAX_NAME_CHARS = 64
_NAME = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_NAME_CHARS - 1}}}")
_IDENTITY_PART = re.compile(r"[a-z0-9][a-z0-9_]*")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_COUNT_PAGE = 1000
_RESERVED = (*TASK_FIELDS,)
_CHILD_PREFIX = CHILD_MARK.lstrip(".")  # "child_": a child run's task


# ------------------------------------------------------------------ the request


class AgentTaskAsk(NamedTuple):
    """An ``agent.task.schedule``: ``timezone`` None is ``[scheduler] default_timezone``;
    ``name`` None is made from the title."""

    title: str
    schedule: str
    recurring: bool
    timezone: str | None
    payload: dict[str, Any]
    prompt: str | None
    name: str | None


def title_text(name: str, value: Any) -> str:
    """Printable text of 1 to MAX_TITLE_CHARS characters."""
    checked = values.text(name, value, max_chars=MAX_TITLE_CHARS)
    if not checked.isprintable():
        raise InvalidValue(name, "must be printable (no control characters or line breaks)")
    return checked


def prompt_text(name: str, value: Any) -> str:
    """Text of 1 to MAX_PROMPT_CHARS characters (line breaks allowed)."""
    return values.text(name, value, max_chars=MAX_PROMPT_CHARS)


def task_name(name: str, value: Any) -> str:
    """The last part of an agent task's id: a slug (lowercase letters, digits, ``_``)."""
    checked = values.text(name, value, max_chars=MAX_NAME_CHARS)
    if not _NAME.fullmatch(checked):
        raise InvalidValue(
            name,
            f"{checked!r}: expected a name of 1 to {MAX_NAME_CHARS} lowercase letters, digits "
            "and _, starting with a letter",
        )
    if checked in _RESERVED or checked.startswith(_CHILD_PREFIX):
        raise InvalidValue(
            name,
            f"{checked!r} is reserved (no part of a task id is {', '.join(_RESERVED)} or "
            f"starts with {_CHILD_PREFIX}): choose another name",
        )
    return checked


@strict
def read_schedule(request: Fields) -> AgentTaskAsk:
    return AgentTaskAsk(
        title=request.required("title", title_text),
        schedule=request.required("schedule", fields.text),
        recurring=request.optional("recurring", fields.flag, True),
        timezone=request.optional("timezone", fields.identifier, None),
        payload=request.optional("payload", fields.mapping, {}),
        prompt=request.optional("prompt", prompt_text, None),
        name=request.optional("name", task_name, None),
    )


# ------------------------------------------------------------------ names


def namespace_of(identity: str) -> str:
    """``agent.<identity>.``: the prefix of ``identity``'s agent task ids. An identity that
    cannot be one (a ``-`` in it, a part named like a task field or starting with ``child_``) is
    refused rather than rewritten: two identities never share a namespace."""
    parts = identity.split(".")
    fits = all(_IDENTITY_PART.fullmatch(part) for part in parts)
    reserved = [p for p in parts if p in _RESERVED or p.startswith(_CHILD_PREFIX)]
    if not fits or reserved:
        why = (
            "its parts are lowercase letters, digits and _ only (no '-')"
            if not fits
            else f"no part of it may be {', '.join(_RESERVED)} or start with {_CHILD_PREFIX}"
        )
        raise TaskPermissionError(
            f"identity {identity!r} cannot schedule agent tasks: its tasks are named "
            f"{NAMESPACE}<identity>.<name>, so {why}; use an identity that fits"
        )
    return f"{NAMESPACE}{identity}."


def name_from_title(title: str) -> str:
    """A task name made from a title: ASCII-folded, lowercase, runs of anything else as ``_``
    ("Reflect on today's conversations" -> ``reflect_on_today_s_conversations``)."""
    folded = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("_", folded.lower()).strip("_")[: MAX_NAME_CHARS - 2].rstrip("_")
    if not slug:
        return "task"
    if not slug[0].isalpha() or slug in _RESERVED or slug.startswith(_CHILD_PREFIX):
        slug = f"t_{slug}"
    return slug


def is_agent_task(task_id: str) -> bool:
    return task_id.startswith(NAMESPACE)


# ------------------------------------------------------------------ the rules


class AgentRules:
    """The checks of an agent task's definition, at schedule and at every later change."""

    def __init__(self, settings: AgentSettings) -> None:
        self.settings = settings

    def check_spacing(self, schedule: str) -> None:
        """InvalidValue if ``schedule`` fires more often than ``min_interval_s``."""
        try:
            spec = parse_schedule_spec(schedule)
        except ScheduleSyntaxError as error:
            raise InvalidValue("schedule", str(error)) from error
        gap = shortest_gap_s(spec)
        least = self.settings.min_interval_s
        if gap is not None and gap < least:
            raise InvalidValue(
                "schedule",
                f"{schedule!r} fires {gap:g} s apart at its closest; an agent task fires at "
                f"most once every {least:g} s ([agents] min_interval_s)",
            )

    def config(self, ask: AgentTaskAsk) -> dict[str, Any]:
        """The runner's options of an ask."""
        config: dict[str, Any] = {"title": ask.title}
        if ask.prompt is not None:
            config["prompt"] = ask.prompt
        if ask.payload:
            config["payload"] = ask.payload
        return config

    def check_config(self, config: Mapping[str, Any]) -> None:
        """InvalidValue unless ``config`` is the runner's options: ``title``, and optionally
        ``prompt`` and ``payload``, each as ``agent.task.schedule`` takes it."""
        request = Fields(config)
        request.required("title", title_text)
        request.optional("prompt", prompt_text, None)
        request.optional("payload", fields.mapping, None)
        try:
            request.done()
        except InvalidValue as error:
            raise InvalidValue(
                "config", f"an agent task's config is title, prompt and payload: {error}"
            ) from error

    def check_change(self, stored: TaskRecord, changes: Mapping[str, Any]) -> None:
        """An update of an agent task stays within the rules ``agent.task.schedule`` applied:
        no other class, no policy map (``denied``), the schedule's interval and the runner's
        options checked again (``invalid``). Any other task passes."""
        if not is_agent_task(stored.task_id):
            return
        fixed = [name for name in ("task_class", *definitions.POLICY_FIELDS) if name in changes]
        if fixed:
            raise TaskPermissionError(
                f"task {stored.task_id!r}: an agent task's {', '.join(fixed)} cannot change "
                "(agent.task.schedule set them); delete it and schedule it again"
            )
        if "schedule" in changes:
            self.check_spacing(changes["schedule"])
        if "config" in changes:
            self.check_config(changes["config"])


# ------------------------------------------------------------------ the handler


class AgentTasks:
    """What ``agent.task.schedule`` does; ``sender`` is the asker's authenticated identity."""

    def __init__(
        self,
        *,
        store: StoreClient,
        requests: TaskRequests,
        catalogue: Catalogue,
        rules: AgentRules,
        settings: SchedulerSettings,
    ) -> None:
        self._store = store
        self._requests = requests
        self._catalogue = catalogue
        self._rules = rules
        self._settings = settings
        self._quota = asyncio.Lock()  # the count and the write of one ask at a time

    async def schedule(self, sender: str, ask: AgentTaskAsk) -> Payload:
        task_id = namespace_of(sender) + (ask.name or name_from_title(ask.title))
        try:
            check_task_id(task_id)
        except ConfigError as error:  # an identity too long for an id, say
            raise InvalidValue("name", f"{task_id!r}: expected {error.expected}") from error
        self._rules.check_spacing(ask.schedule)
        agents = self._rules.settings
        new = NewTask(
            task_id=task_id,
            task_class=agents.runner_class,
            schedule=ask.schedule,
            timezone=ask.timezone,
            config=self._rules.config(ask),
            enabled=True,
            misfire_policy=None,
            retry_policy=None,
            run_policy=None if ask.recurring else {"max_runs": 1},
        )
        compiled = compile_definition(new, self._settings)
        spec = TaskSpec(
            task_id=task_id,
            task_class=new.task_class,
            schedule=new.schedule,
            config=new.config,
            enabled=True,
            timezone=new.timezone or self._settings.default_timezone,
            run_policy=new.run_policy,
            owner=sender,
        )
        warnings = self._catalogue.check(task_id, new.task_class, new.config)
        async with self._quota:
            held = await self.count(sender)
            if held >= agents.max_tasks_per_identity:
                raise TaskPermissionError(
                    f"{sender!r} holds {held} agent tasks, its quota "
                    f"([agents] max_tasks_per_identity = {agents.max_tasks_per_identity}): "
                    "delete one before scheduling another"
                )
            prepared = self._requests.prepare(
                spec, compiled, stored=None, expected_version=0, warnings=warnings
            )
            try:
                written = await self._store.put_task(prepared.spec, expected_version=0)
            except LeaseLost:
                raise
            except Conflict as error:
                raise TaskExists(
                    f"task {task_id!r} already exists: give this one another name (name), or "
                    "change that one with scheduler.task.update"
                ) from error
        return await self._requests.settle(prepared, written)

    async def count(self, owner: str) -> int:
        """How many agent tasks ``owner`` holds, enabled or not (its own only: the store's
        owner filter, not the id, says whose a task is)."""
        held = 0
        cursor: str | None = NAMESPACE
        while cursor is not None:
            page = await self._store.list_tasks(after=cursor, limit=_COUNT_PAGE, owner=owner)
            ours = [task for task in page.items if is_agent_task(task.task_id)]
            held += len(ours)
            if len(ours) < len(page.items):
                break  # past the agent tasks, in id order
            cursor = page.next_cursor
        return held
