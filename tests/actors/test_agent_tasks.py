"""``agent.task.schedule`` on a real embedded system (broker, encrypted store, scheduler on a fake
clock, a recording executor of the ``agent`` category): the asker's namespace, the configured
runner, the quota (count and minimum interval, racing asks included), bad input refused with
nothing stored, and ownership held against a second admitted identity."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from actors import ActorSystem
from actors.scheduling import SchedulerActor
from actors.scheduling.agents import name_from_title, namespace_of
from bus import BusClient, KeysDirectory, RemoteError
from config.agents import DEFAULT_RUNNER, AgentSettings
from config.errors import ConfigError
from config.schedules import parse_schedule_spec
from config.sections import SchedulerSettings
from scheduler import FakeClock
from scheduler.spacing import shortest_gap_s
from tasks.errors import TaskPermissionError
from tests.asking import Asking
from tests.bus.waits import eventually
from tests.scheduler.conftest import store_system
from tests.scheduler.rig import Caller, RecordingExecutor, Rig, Scheduling, StoreClock

AGENTS = AgentSettings(max_tasks_per_identity=3, min_interval_s=60.0)
SCHEDULE = "agent.task.schedule"
REFLECT = "agent.alice.reflect_on_today_s_conversations"


class AgentScheduling(Scheduling):
    """Schedulers with the test's ``[agents]`` settings."""

    async def __call__(
        self, name: str = "scheduler", *, lead: bool = True, **options: Any
    ) -> SchedulerActor:
        options.setdefault("agents", AGENTS)
        return await super().__call__(name, lead=lead, **options)


@dataclass
class Agent(Asking):
    """An admitted identity in no role, asking the scheduler."""

    client: BusClient
    identity: str

    async def schedule(self, **ask: Any) -> dict[str, Any]:
        reply = await self.ask(SCHEDULE, **ask)
        return dict(reply["task"])

    async def mine(self) -> list[str]:
        return [t["task_id"] for t in (await self.ask("scheduler.task.list"))["tasks"]]


@pytest.fixture
def store_clock() -> StoreClock:
    return StoreClock()


@pytest.fixture
async def system(
    keys: KeysDirectory, tmp_path: Path, store_clock: StoreClock
) -> AsyncIterator[ActorSystem]:
    async with store_system(keys, tmp_path, store_clock) as system:
        yield system


@pytest.fixture
async def rig(system: ActorSystem, store_clock: StoreClock) -> AsyncIterator[Rig]:
    """The scheduler on a fake clock (a day ago, on a whole minute), the store keeping it too."""
    clock = FakeClock(datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=1))
    store_clock.read = clock.wall
    tester = await system.client("tester")
    caller = Caller(tester, await tester.subscribe("scheduler."))
    runner = RecordingExecutor(
        await system.client("executor-test"), "scheduler.task.dispatch.agent", clock=clock
    )
    await runner.start()
    rig = Rig(
        AgentScheduling(system, SchedulerSettings(lease_ttl_s=2.0)), caller, runner, system, clock
    )
    await rig.leads("scheduler")
    yield rig
    await runner.stop()


async def agent(system: ActorSystem, identity: str) -> Agent:
    return Agent(await system.client(identity), identity)


# ------------------------------------------------------------------ scheduling


async def test_a_task_is_named_in_the_askers_namespace_and_runs_the_configured_runner(
    rig: Rig,
) -> None:
    alice = await agent(rig.system, "alice")
    task = await alice.schedule(title="Reflect on today's conversations", schedule="0 23 * * *")
    assert task["task_id"] == REFLECT
    assert (task["owner"], task["task_class"], task["enabled"]) == ("alice", DEFAULT_RUNNER, True)
    assert task["config"] == {"title": "Reflect on today's conversations"}
    assert task["run_policy"] is None  # recurring by default
    named = await alice.schedule(
        title="Water the plants",
        schedule="@daily",
        name="plants",
        prompt="Remind me.\nKindly.",
        payload={"room": "kitchen", "pots": [1, 2]},
        timezone="Europe/Berlin",
        recurring=False,
    )
    assert named["task_id"] == "agent.alice.plants"
    assert named["config"] == {
        "title": "Water the plants",
        "prompt": "Remind me.\nKindly.",
        "payload": {"room": "kitchen", "pots": [1, 2]},
    }
    assert (named["timezone"], named["run_policy"]) == ("Europe/Berlin", {"max_runs": 1})
    assert sorted(await alice.mine()) == ["agent.alice.plants", REFLECT]
    again = await alice.refused(
        SCHEDULE, title="Water the plants", schedule="@daily", name="plants"
    )
    assert again.code == "exists"
    assert "another name" in again.reason


async def test_the_owner_triggers_its_task_and_the_agent_executor_runs_it(rig: Rig) -> None:
    alice = await agent(rig.system, "alice")
    await alice.schedule(title="Reflect on today's conversations", schedule="0 23 * * *")
    await alice.ask("scheduler.task.trigger", task_id=REFLECT)
    (run,) = await rig.executor.until(1)
    assert (run.task_id, run.task_class) == (REFLECT, DEFAULT_RUNNER)
    assert run.config == {"title": "Reflect on today's conversations"}


async def test_a_task_that_does_not_recur_fires_once_then_disables_itself(rig: Rig) -> None:
    """``recurring`` false is ``run_policy.max_runs = 1``: one fire at the schedule's next
    instant, then the task is disabled; a recurring task beside it keeps firing meanwhile."""
    alice = await agent(rig.system, "alice")
    await alice.schedule(title="once", schedule="every 2m", recurring=False)
    await alice.schedule(title="often", schedule="every 1m")
    await rig.advance(120)
    await eventually(lambda: "agent.alice.once" in _ran(rig), "the one-shot ran", 10)

    async def disabled() -> bool:
        task = await alice.ask("scheduler.task.get", task_id="agent.alice.once")
        return task["task"]["enabled"] is False

    await eventually(disabled, "the one-shot disabled itself", 10)
    await rig.advance(600)
    last = rig.clock.wall()  # a whole minute: the recurring task fires at it

    def fired_at_last() -> bool:
        return any(
            r.task_id == "agent.alice.often" and r.scheduled_at == last for r in rig.executor.runs
        )

    await eventually(fired_at_last, "the recurring task fired up to now", 10)
    assert _ran(rig).count("agent.alice.once") == 1


def _ran(rig: Rig) -> list[str]:
    return [run.task_id for run in rig.executor.runs]


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("ask", "field"),
    [
        ({"schedule": "@daily"}, "title"),
        ({"title": "", "schedule": "@daily"}, "title"),
        ({"title": "x" * 201, "schedule": "@daily"}, "title"),
        ({"title": "two\nlines", "schedule": "@daily"}, "title"),
        ({"title": 7, "schedule": "@daily"}, "title"),
        ({"title": "t"}, "schedule"),
        ({"title": "t", "schedule": "every day at noon"}, "schedule"),
        ({"title": "t", "schedule": "@daily", "recurring": "yes"}, "recurring"),
        ({"title": "t", "schedule": "@daily", "payload": [1]}, "payload"),
        ({"title": "t", "schedule": "@daily", "prompt": "p" * 4001}, "prompt"),
        ({"title": "t", "schedule": "@daily", "timezone": "Mars/Olympus"}, "timezone"),
        ({"title": "t", "schedule": "@daily", "name": "Bad-Name"}, "name"),
        ({"title": "t", "schedule": "@daily", "name": "a.b"}, "name"),
        ({"title": "t", "schedule": "@daily", "name": "n" * 65}, "name"),
        ({"title": "t", "schedule": "@daily", "name": "options"}, "name"),
        ({"title": "t", "schedule": "@daily", "name": "child_0123456789abcdef"}, "name"),
        # the asker cannot name a class, an owner or a policy: no such field
        ({"title": "t", "schedule": "@daily", "task_class": "tasks.agency:DailyDigest"}, None),
        ({"title": "t", "schedule": "@daily", "owner": "bob"}, None),
        ({"title": "t", "schedule": "@daily", "run_policy": {"max_runs": 9}}, None),
        ({"title": "t", "schedule": "@daily", "task_id": "agent.bob.x"}, None),
        # the quota's interval
        ({"title": "t", "schedule": "every 30s"}, "min_interval_s"),
        ({"title": "t", "schedule": "* * * * * *"}, "min_interval_s"),
        ({"title": "t", "schedule": "0,30 0 * * * *"}, "min_interval_s"),
        ({"title": "t", "schedule": "at:2001-01-01T00:00:00Z"}, "a one-shot"),
    ],
)
async def test_bad_input_is_refused_invalid_and_nothing_is_stored(
    rig: Rig, ask: dict[str, Any], field: str | None
) -> None:
    alice = await agent(rig.system, "alice")
    refused = await alice.refused(SCHEDULE, **ask)
    assert refused.code == "invalid", refused
    unknown = sorted(set(ask) - {"title", "schedule"})
    assert (field or f"{unknown[-1]}: is not a field") in refused.reason
    assert await alice.mine() == []


async def test_a_schedule_at_the_minimum_interval_is_accepted(rig: Rig) -> None:
    alice = await agent(rig.system, "alice")
    for schedule in ("* * * * *", "0 * * * * *", "at:2099-01-01T00:00:00Z"):  # the quota: 3
        await alice.schedule(title=f"ok {schedule}", schedule=schedule)
    refused = await alice.refused(SCHEDULE, title="t", schedule="every 59s")
    assert refused.reason == (
        "schedule: 'every 59s' fires 59 s apart at its closest; an agent task fires at most "
        "once every 60 s ([agents] min_interval_s)"
    )


# ------------------------------------------------------------------ the quota


async def test_the_count_quota_refuses_the_next_task_and_deletion_frees_a_place(rig: Rig) -> None:
    alice, bob = await agent(rig.system, "alice"), await agent(rig.system, "bob")
    for n in range(3):
        await alice.schedule(title=f"task {n}", schedule="@daily")
    await alice.ask("scheduler.task.disable", task_id="agent.alice.task_0")  # still counted
    refused = await alice.refused(SCHEDULE, title="one more", schedule="@daily")
    assert refused.code == "denied"
    assert refused.reason == (
        "'alice' holds 3 agent tasks, its quota ([agents] max_tasks_per_identity = 3): "
        "delete one before scheduling another"
    )
    await bob.schedule(title="task 0", schedule="@daily")  # another identity's own quota
    await alice.ask("scheduler.task.delete", task_id="agent.alice.task_1")
    await alice.schedule(title="one more", schedule="@daily")
    assert len(await alice.mine()) == 3


async def test_racing_asks_cannot_pass_the_quota(rig: Rig) -> None:
    alice = await agent(rig.system, "alice")
    asks = [
        alice.client.ask(SCHEDULE, {"title": f"race {n}", "schedule": "@daily"}, timeout=10)
        for n in range(12)
    ]
    outcomes = await asyncio.gather(*asks, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, RemoteError)]
    assert len(refused) == 9
    assert {o.code for o in refused} == {"denied"}
    assert len(await alice.mine()) == 3


# ------------------------------------------------------------------ ownership


async def test_another_identity_cannot_touch_an_agents_tasks(rig: Rig) -> None:
    alice, bob = await agent(rig.system, "alice"), await agent(rig.system, "bob")
    await alice.schedule(title="Reflect on today's conversations", schedule="0 23 * * *")
    before = await alice.ask("scheduler.task.get", task_id=REFLECT)
    for topic, extra in (
        ("scheduler.task.get", {}),
        ("scheduler.task.status", {}),
        ("scheduler.task.history", {}),
        ("scheduler.task.missed", {}),
        ("scheduler.task.update", {"schedule": "@hourly"}),
        ("scheduler.task.update", {"config": {"title": "mine now"}}),
        ("scheduler.task.enable", {}),
        ("scheduler.task.disable", {}),
        ("scheduler.task.trigger", {}),
        ("scheduler.task.reset", {}),
        ("scheduler.task.delete", {}),
    ):
        refused = await bob.refused(topic, task_id=REFLECT, **extra)
        assert refused.code == "denied", (topic, refused)
        assert "'bob' may not" in refused.reason
        assert "alice" not in refused.reason.split("task")[0]
    # bob cannot squat alice's namespace through the general create either, nor his own
    for task_id in ("agent.alice.squat", "agent.bob.own"):
        refused = await bob.refused(
            "scheduler.task.create", task_id=task_id, task_class=DEFAULT_RUNNER, schedule="@daily"
        )
        assert refused.code == "denied"
        assert "agent.task.schedule" in refused.reason
    assert await bob.mine() == []
    mine = await bob.schedule(title="Reflect on today's conversations", schedule="0 23 * * *")
    assert mine["task_id"] == "agent.bob.reflect_on_today_s_conversations"
    assert await bob.mine() == ["agent.bob.reflect_on_today_s_conversations"]
    assert await alice.ask("scheduler.task.get", task_id=REFLECT) == before
    assert rig.executor.runs == []


async def test_the_owner_changes_its_task_within_the_rules(rig: Rig) -> None:
    alice = await agent(rig.system, "alice")
    await alice.schedule(title="Reflect", schedule="0 23 * * *", name="reflect")
    ref = "agent.alice.reflect"
    for change, code, says in (
        ({"task_class": "tasks.agency:DailyDigest"}, "denied", "runner class"),
        ({"run_policy": {"max_runs": 5}}, "denied", "run_policy cannot change"),
        ({"retry_policy": {"max_retries": 100, "delay_s": 0}}, "denied", "retry_policy"),
        ({"schedule": "every 10s"}, "invalid", "min_interval_s"),
        ({"config": {"title": "x", "module": "os"}}, "invalid", "title, prompt and payload"),
        ({"config": {"title": ""}}, "invalid", "title"),
    ):
        refused = await alice.refused("scheduler.task.update", task_id=ref, **change)
        assert (refused.code, says in refused.reason) == (code, True), (change, refused)
    changed = await alice.ask(
        "scheduler.task.update", task_id=ref, schedule="*/5 * * * *", config={"title": "Reflect!"}
    )
    assert (changed["task"]["schedule"], changed["task"]["config"]) == (
        "*/5 * * * *",
        {"title": "Reflect!"},
    )
    assert (await alice.ask("scheduler.task.delete", task_id=ref)) == {"deleted": ref}
    assert await alice.mine() == []


async def test_an_identity_that_cannot_name_a_namespace_is_refused(rig: Rig) -> None:
    for identity in ("team-a", "options", "x.child_y"):
        refused = await (await agent(rig.system, identity)).refused(
            SCHEDULE, title="t", schedule="@daily"
        )
        assert refused.code == "denied"
        assert f"identity {identity!r}" in refused.reason


# ------------------------------------------------------------------ pure parts


@pytest.mark.parametrize(
    ("schedule", "gap"),
    [
        ("0 23 * * *", 86_400.0),
        ("* * * * *", 60.0),
        ("*/15 9-17 * * 1-5", 900.0),
        ("0,59 1,3 * * *", 3540.0),
        ("59 23 * * *", 86_400.0),
        ("0,59 0,23 1,31 * *", 60.0),  # 23:59 on the 31st, 00:00 on the 1st: as if days touch
        ("30 0 3 * * *", 86_400.0),
        ("0,1 0 0 1 1 *", 1.0),
        ("every 90s", 90.0),
        ("@hourly", 3600.0),
        ("at:2030-01-01T00:00:00Z", None),
    ],
)
def test_the_shortest_gap_is_read_from_the_schedule(schedule: str, gap: float | None) -> None:
    assert shortest_gap_s(parse_schedule_spec(schedule)) == gap


def test_names_and_namespaces() -> None:
    assert name_from_title("Reflect on today's conversations") == "reflect_on_today_s_conversations"
    assert name_from_title("Überprüfe E-Mails!") == "uberprufe_e_mails"
    assert name_from_title("2nd pass") == "t_2nd_pass"
    assert name_from_title("Options") == "t_options"
    assert name_from_title("child_x") == "t_child_x"
    assert name_from_title("日本語") == "task"
    assert len(name_from_title("x" * 300)) <= 64
    assert namespace_of("alice") == "agent.alice."
    assert namespace_of("team.alice") == "agent.team.alice."
    for bad in ("aico-backend", "schedule", "a.enabled", "child_1", "x.child_2"):
        with pytest.raises(TaskPermissionError, match="cannot schedule agent tasks"):
            namespace_of(bad)


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"runner_class": "no colon"}, "agents.runner_class"),
        ({"max_tasks_per_identity": -1}, "agents.max_tasks_per_identity"),
        ({"min_interval_s": 0.5}, "agents.min_interval_s"),
    ],
)
def test_agent_settings_are_checked(values: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as refused:
        AgentSettings(**values)
    assert refused.value.key == key
