"""Agents schedule their own work, against a real ``taskbus up`` (CURVE over tcp, the shipped
default ACL with its ``agent.task.`` rules, a real encrypted store, the ``agent`` executor): a
task in the asker's namespace runs the configured runner; one that does not recur fires once and
disables itself; a second admitted identity cannot touch it, nor pass its own quota by racing;
an identity that cannot name a namespace is refused."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from datetime import datetime

import pytest

from bus import KeysDirectory
from config import load_settings
from config.agents import DEFAULT_RUNNER
from config.settings import Settings
from taskbus import Refused, RemoteError, TaskbusClient
from tests.e2e.procs import free_port, running_up
from tests.e2e.system import until

pytestmark = pytest.mark.timeout(180)

IDENTITIES = ("alice", "bob", "team-a")
REFLECT = "agent.alice.reflect_on_today_s_conversations"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("agents") / "home"
    keys = KeysDirectory(home / "keys")
    keys.broker_keypair(create=True)
    for identity in IDENTITIES:
        keys.identity_keypair(identity, create=True)  # as `taskbus keys init --identity` does
    environment = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
        "TASKBUS_RESOURCES__MAX_MEMORY_PERCENT": "100",
        "TASKBUS_AGENTS__MIN_INTERVAL_S": "1",  # seconds, not minutes, for the test's sake
        "TASKBUS_AGENTS__MAX_TASKS_PER_IDENTITY": "3",
    }
    with running_up(environment):
        yield environment


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return load_settings(environ=env)


async def test_an_agent_schedules_its_work_and_only_it_may_touch_it(settings: Settings) -> None:
    async with TaskbusClient.connect(settings, responder_wait_s=30) as admin:
        await admin.stats(wait_s=30)
        async with (
            TaskbusClient.connect(settings, identity="alice") as alice,
            TaskbusClient.connect(settings, identity="bob") as bob,
        ):
            task = await alice.schedule_task(
                "Reflect on today's conversations", "0 23 * * *", payload={"day": "today"}
            )
            assert (task.task_id, task.owner, task.task_class) == (REFLECT, "alice", DEFAULT_RUNNER)
            # the owner runs it now: the agent executor runs the configured runner
            run_id = await alice.trigger(REFLECT)

            async def ran() -> bool:
                return (await alice.run(run_id))["run"]["success"] is True

            await until(ran, "the agent task ran")
            result = (await alice.run(run_id))["run"]["result"]
            assert result["title"] == "Reflect on today's conversations"
            assert result["payload"] == {"day": "today"}
            before = await admin.get(REFLECT)
            # another identity: every scheduler.task.* use of it is denied
            for name, call in (
                ("read", bob.get(REFLECT)),
                ("read", bob.status(REFLECT)),
                ("read", bob.history(REFLECT)),
                ("read", bob.missed(REFLECT)),
                ("read", bob.run(run_id)),
                ("update", bob.update(REFLECT, schedule="every 1s")),
                ("delete", bob.delete(REFLECT)),
                ("enable", bob.enable(REFLECT)),
                ("disable", bob.disable(REFLECT)),
                ("trigger", bob.trigger(REFLECT)),
                ("reset", bob.reset(REFLECT)),
            ):
                with pytest.raises(Refused) as refused:
                    await call
                assert refused.value.code == "denied", (name, refused.value)
                assert f"'bob' may not {name} task" in refused.value.reason
            with pytest.raises(Refused) as squat:  # nor through the general create
                await bob.create("agent.alice.squat", DEFAULT_RUNNER, "@daily")
            assert squat.value.code == "denied"
            assert await bob.tasks() == []
            assert await admin.get(REFLECT) == before
            # the owner may change it, within the rules
            with pytest.raises(Refused) as swapped:
                await alice.update(REFLECT, task_class="tasks.reminders:Reminder")
            assert swapped.value.code == "denied"
            assert (await alice.update(REFLECT, schedule="30 22 * * *"))[
                "schedule"
            ] == "30 22 * * *"
            await alice.delete(REFLECT)
            assert [t["task_id"] for t in await alice.tasks()] == []


async def test_a_task_that_does_not_recur_fires_once_and_disables_itself(
    settings: Settings,
) -> None:
    async with TaskbusClient.connect(settings, identity="alice", responder_wait_s=30) as alice:
        once = await alice.schedule_task("once", "every 2s", recurring=False)
        beat = await alice.schedule_task("beat", "every 1s")
        assert once.run_policy == {"max_runs": 1}

        async def disabled() -> bool:
            return (await alice.get(once.task_id))["enabled"] is False

        await until(disabled, "the one-shot disabled itself")
        after = datetime.now().astimezone()

        async def beat_went_on() -> bool:  # three more seconds of fires came and went
            runs = await alice.history(beat.task_id, limit=100)
            return any(
                (datetime.fromisoformat(r["scheduled_at"]) - after).total_seconds() > 3
                for r in runs
            )

        await until(beat_went_on, "the recurring task fired on")
        runs = await alice.history(once.task_id, limit=100)
        assert len(runs) == 1
        assert runs[0]["success"] is True
        for task in (once, beat):
            await alice.delete(task.task_id)


async def test_racing_asks_cannot_pass_the_quota_and_a_dashed_identity_is_refused(
    settings: Settings,
) -> None:
    async with (
        TaskbusClient.connect(settings, identity="bob", responder_wait_s=30) as bob,
        TaskbusClient.connect(settings, identity="team-a") as team,
    ):
        asks = [bob.schedule_task(f"race {n}", "@daily") for n in range(8)]
        outcomes = await asyncio.gather(*asks, return_exceptions=True)
        refused = [o for o in outcomes if isinstance(o, RemoteError)]
        assert [o.code for o in refused] == ["denied"] * 5
        assert "max_tasks_per_identity = 3" in refused[0].reason
        assert len(await bob.tasks()) == 3
        with pytest.raises(RemoteError) as dashed:
            await team.schedule_task("mine", "@daily")
        assert dashed.value.code == "denied"
        assert "identity 'team-a' cannot schedule agent tasks" in dashed.value.reason
