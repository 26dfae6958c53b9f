"""Create and update are checked against the task classes the category's executors announce:
a real store, scheduler and executor on an embedded bus under the default ACL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors import ActorState, ActorSystem
from actors.executing import ExecutorActor
from actors.scheduling import SchedulerActor
from actors.scheduling.owners import Owners
from actors.storing import StoreActor
from bus import BusClient, KeysDirectory
from bus.acl import Acl, Roles
from config import BusSettings, topics
from config.actors import ActorSettings
from config.bus import default_acl
from config.sections import CategorySettings, SchedulerSettings
from store import LibsqlStore
from tasks import TaskRegistry
from tasks.base import BaseTask
from tasks.context import TaskContext
from tasks.options import TaskOptions
from tasks.result import TaskResult
from tests.asking import Asking
from tests.bus.waits import eventually
from tests.conftest import TEST_ROLES

REMINDER = "tasks.reminders:Reminder"


@dataclass(frozen=True)
class CountOptions(TaskOptions):
    steps: int = 3
    labels: list[str] = field(default_factory=list)
    ratio: float | None = None


class Count(BaseTask):
    category = "user"
    Options = CountOptions

    async def execute(self, ctx: TaskContext[CountOptions]) -> TaskResult:
        return TaskResult.ok(steps=ctx.options.steps)


COUNT = Count.key()


@dataclass
class Rig(Asking):
    system: ActorSystem
    client: BusClient
    schedulers: list[SchedulerActor]

    @property
    def scheduler(self) -> SchedulerActor:
        return self.schedulers[-1]

    async def knows(self, category: str) -> None:
        await eventually(
            lambda: category in self.scheduler.catalogue.categories(),
            f"the scheduler knows the {category} executors' classes",
            10,
        )

    async def create(self, task_id: str, task_class: str, **fields: Any) -> dict[str, Any]:
        return await self.ask(
            topics.TASK_CREATE,
            task_id=task_id,
            task_class=task_class,
            schedule="@yearly",
            **fields,
        )


Start = Callable[..., Awaitable[Rig]]


@pytest.fixture
async def start(keys: KeysDirectory, tmp_path: Path) -> AsyncIterator[Start]:
    systems: list[ActorSystem] = []

    async def make(*, executor: bool = True, executor_first: bool = False) -> Rig:
        system = await ActorSystem.embedded(
            settings=ActorSettings(restart_backoff_s=0.01, shutdown_deadline_s=1.0),
            bus_settings=BusSettings(ask_timeout_s=5.0, acl=default_acl(), roles=TEST_ROLES),
            keys=keys,
            name="catalogue",
        )
        systems.append(system)
        store = LibsqlStore(
            tmp_path / "data" / "taskbus.db", key_file=tmp_path / "data" / "master.key", environ={}
        )
        await system.spawn(lambda: StoreActor(store))
        settings = SchedulerSettings(lease_ttl_s=2.0)
        owners = Owners(Roles(TEST_ROLES))
        schedulers: list[SchedulerActor] = []

        def scheduler() -> SchedulerActor:
            schedulers.append(SchedulerActor(settings, owners=owners))
            return schedulers[-1]

        registry = TaskRegistry.with_builtins()
        registry.register(Count)

        def spawn_executor() -> Awaitable[Any]:
            return system.spawn(
                lambda: ExecutorActor(CategorySettings(name="user"), registry, scheduler=settings),
                name="executor-user",
            )

        if executor and executor_first:
            await spawn_executor()
        await system.spawn(scheduler)
        await eventually(
            lambda: system.status()["scheduler"]["state"] == ActorState.RUNNING, "leads", 10
        )
        if executor and not executor_first:
            await spawn_executor()
        client = await system.client("tester")
        return Rig(system, client, schedulers)

    yield make
    for system in systems:
        await asyncio.wait_for(system.stop(deadline_s=1.0), 10)


async def test_a_mistyped_class_is_refused_with_a_suggestion(start: Start) -> None:
    rig = await start()
    await rig.knows("user")
    refused = await rig.refused(
        topics.TASK_CREATE,
        task_id="user.x",
        task_class="tasks.reminders:Remindr",
        schedule="@yearly",
    )
    assert refused.code == "invalid"
    assert refused.reason == (
        "task_class: 'tasks.reminders:Remindr' is not a task class of the 'user' executors; "
        "did you mean 'tasks.reminders:Reminder'?"
    )
    nothing = await rig.refused(topics.TASK_GET, task_id="user.x")
    assert nothing.code == "not_found"


async def test_a_mistyped_option_is_refused_with_a_suggestion(start: Start) -> None:
    rig = await start()
    await rig.knows("user")
    refused = await rig.refused(
        topics.TASK_CREATE,
        task_id="user.x",
        task_class=COUNT,
        schedule="@yearly",
        config={"stepz": 3},
    )
    assert refused.code == "invalid"
    assert refused.reason == f"config.stepz: {COUNT} has no option 'stepz'; did you mean 'steps'?"


async def test_an_option_of_the_wrong_type_is_refused_naming_it(start: Start) -> None:
    rig = await start()
    await rig.knows("user")
    refused = await rig.refused(
        topics.TASK_CREATE,
        task_id="user.x",
        task_class=COUNT,
        schedule="@yearly",
        config={"steps": "three"},
    )
    assert refused.code == "invalid"
    assert refused.reason == (
        f"config.steps: expected an integer, not str (option 'steps' of {COUNT} is int)"
    )
    refused = await rig.refused(
        topics.TASK_CREATE,
        task_id="user.x",
        task_class=COUNT,
        schedule="@yearly",
        config={"labels": ["a", 2]},
    )
    assert refused.reason.startswith("config.labels[1]: expected a string, not int")
    reply = await rig.create("user.x", COUNT, config={"steps": 4, "labels": ["a"], "ratio": 1})
    assert reply["task"]["config"] == {"steps": 4, "labels": ["a"], "ratio": 1}
    assert "warnings" not in reply


async def test_no_executor_up_accepts_with_a_warning(start: Start) -> None:
    rig = await start(executor=False)
    reply = await rig.create("user.x", "tasks.reminders:Remindr", config={"stepz": 3})
    assert reply["task"]["task_id"] == "user.x"
    assert reply["warnings"] == [
        "no executor of category 'user' is up: the class and its options are not checked"
    ]
    status = await rig.ask(topics.TASK_STATUS, task_id="user.x")  # what task show prints
    assert status["warnings"] == reply["warnings"]


async def test_status_says_what_the_catalogue_says_of_a_stored_task_now(start: Start) -> None:
    rig = await start()
    await rig.knows("user")
    await rig.create("user.ok", REMINDER)
    assert (await rig.ask(topics.TASK_STATUS, task_id="user.ok"))["warnings"] == []


async def test_a_duplicate_id_is_exists(start: Start) -> None:
    rig = await start()
    await rig.knows("user")
    await rig.create("user.x", REMINDER)
    refused = await rig.refused(
        topics.TASK_CREATE, task_id="user.x", task_class=REMINDER, schedule="@daily"
    )
    assert refused.code == "exists"
    assert refused.reason == "task 'user.x' already exists; use task update"


async def test_an_update_to_a_mistyped_class_or_option_is_refused(start: Start) -> None:
    rig = await start()
    await rig.knows("user")
    await rig.create("user.x", COUNT, config={"steps": 1})
    refused = await rig.refused(topics.TASK_UPDATE, task_id="user.x", task_class="tests.Cuont")
    assert refused.code == "invalid"
    assert refused.reason.startswith(
        "task_class: 'tests.Cuont' is not a task class of the 'user' executors"
    )
    # a class whose options the stored config does not fit
    refused = await rig.refused(topics.TASK_UPDATE, task_id="user.x", task_class=REMINDER)
    assert refused.reason.startswith(f"config.steps: {REMINDER} has no option 'steps'")
    refused = await rig.refused(topics.TASK_UPDATE, task_id="user.x", config={"step": 2})
    assert refused.reason.endswith("did you mean 'steps'?")
    stored = await rig.ask(topics.TASK_GET, task_id="user.x")
    assert (stored["task"]["version"], stored["task"]["task_class"]) == (1, COUNT)
    updated = await rig.ask(topics.TASK_UPDATE, task_id="user.x", config={"steps": 2})
    assert updated["task"]["version"] == 2
    assert "warnings" not in updated


async def test_a_scheduler_that_starts_after_the_executor_asks_for_its_classes(
    start: Start,
) -> None:
    rig = await start(executor_first=True)
    await rig.knows("user")
    classes = rig.scheduler.catalogue.classes("user")
    assert classes is not None
    assert classes[COUNT] == {"steps": "int", "labels": "list[str]", "ratio": "float | None"}
    assert REMINDER in classes
    assert not any(key.startswith("tasks.maintenance:") for key in classes)  # its category's


def test_only_executors_may_announce_classes() -> None:
    acl = Acl(default_acl(), TEST_ROLES)
    topic = topics.CATALOGUE_EVENTS + "user"
    assert acl.allows("executor-user", "publish", topic)
    for identity in ("tester", "cli", "scheduler", "someone"):
        assert not acl.allows(identity, "publish", topic), identity
    assert acl.allows("scheduler", "receive", topic)
    assert acl.allows("scheduler", "publish", topics.CATALOGUE_WANTED)
    assert acl.allows("executor-user", "receive", topics.CATALOGUE_WANTED)
    assert not acl.allows("tester", "publish", topics.CATALOGUE_WANTED)
