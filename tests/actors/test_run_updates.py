"""Updates on a real system (broker, encrypted store, scheduler, executor): an update of a live
run is validated by the executor holding it, kept once in the run's inbox as ``update:<name>``,
handled as the step ``handled:<seq>`` and answered with the handler's result; a refused one
keeps nothing; an unknown name is ``invalid``; a run that is not live (sleeping, ended) is
``conflict``; another's run is ``denied``; ``update:*`` cannot be sent as a signal."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from actors.scheduling.live_asks import AnswerAsk, LiveAsks
from actors.scheduling.protocol import RunPush
from actors.scheduling.updates import read_update
from bus import BusClient, RemoteError
from scheduler import FakeClock
from store.errors import InvalidValue
from tasks import BaseTask, TaskContext, TaskResult, update
from tests.bus.waits import eventually
from tests.tasks import rig as system_rig
from tests.tasks.rig import Rig, Start

start = system_rig.start  # the fixture: a broker, store, scheduler and executor

CALLS: Counter[str] = Counter()
GATE: dict[str, asyncio.Event] = {}


class Cart(BaseTask):
    """Live until the test opens its gate; takes the update ``add`` (a sku needed)."""

    category = "user"

    @update("add")
    async def add(self, ctx: TaskContext[Any], payload: Any) -> dict[str, Any]:
        CALLS["add"] += 1
        return {"added": payload["sku"], "handled": CALLS["add"]}

    @add.validator
    def check_add(self, ctx: TaskContext[Any], payload: Any) -> None:
        if not isinstance(payload, dict) or not payload.get("sku"):
            raise ValueError("an item needs a sku")

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        CALLS["live"] += 1
        await GATE["open"].wait()
        return TaskResult.ok()


class Dozing(BaseTask):
    """Sleeps an hour: suspended, not live."""

    category = "user"

    @update("add")
    async def add(self, ctx: TaskContext[Any], payload: Any) -> None:
        CALLS["dozing-add"] += 1

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        await ctx.sleep(3600, name="nap")
        return TaskResult.ok()


@pytest.fixture(autouse=True)
def fresh() -> None:
    CALLS.clear()
    GATE["open"] = asyncio.Event()


async def live_run(rig: Rig, task_id: str, cls: type[BaseTask]) -> str:
    await rig.create(task_id, cls)
    reply = await rig.ask("scheduler.task.trigger", task_id=task_id)
    return str(reply["run"])


async def inbox(rig: Rig, key: str) -> list[tuple[str, Any]]:
    signals = (await rig.ask("store.run.signal.list", run_key=key))["signals"]
    return [(s["name"], s["payload"]) for s in signals]


async def test_an_update_is_validated_kept_once_handled_and_answered(start: Start) -> None:
    rig = await start(classes=(Cart,))
    key = await live_run(rig, "user.cart", Cart)
    await eventually(lambda: CALLS["live"] == 1, "the run live", 10)

    reply = await rig.ask("scheduler.run.update", run=key, name="add", payload={"sku": "A1"})
    assert reply["run"] == key
    assert reply["result"] == {"added": "A1", "handled": 1}
    assert await inbox(rig, key) == [("update:add", {"sku": "A1"})]
    steps = (await rig.ask("store.step.list", run_key=key))["steps"]
    assert [(s["name"], s["result"]) for s in steps] == [
        (f"handled:{reply['seq']}", {"added": "A1", "handled": 1})
    ]

    # refused by the validator: answered invalid, nothing kept, nothing handled
    refused = await rig.refused("scheduler.run.update", run=key, name="add", payload={"qty": 2})
    assert refused.code == "invalid"
    assert "an item needs a sku" in refused.reason
    unknown = await rig.refused("scheduler.run.update", run=key, name="remove")
    assert unknown.code == "invalid"
    assert "no update 'remove'" in unknown.reason
    # update:* is internal: no client sends it as a signal
    faked = await rig.refused("scheduler.run.signal", run=key, name="update:add", payload={})
    assert faked.code == "invalid"
    assert await inbox(rig, key) == [("update:add", {"sku": "A1"})]
    assert CALLS["add"] == 1

    # another's run
    mallory: BusClient = await rig.system.client("mallory")
    try:
        with pytest.raises(RemoteError) as denied:
            await mallory.ask(
                "scheduler.run.update", {"run": key, "name": "add", "payload": {"sku": "B"}}, 10
            )
        assert denied.value.code == "denied"
    finally:
        await mallory.stop()
    assert await inbox(rig, key) == [("update:add", {"sku": "A1"})]

    # once the run has ended, it takes no update
    GATE["open"].set()

    async def ended() -> bool:
        reply = await rig.ask("store.run.get", run_key=key)
        return bool(reply["run"]["state"] == "succeeded")

    await eventually(ended, "the run finished", 10)
    over = await rig.refused("scheduler.run.update", run=key, name="add", payload={"sku": "C"})
    assert (over.code, over.reason) == (
        "conflict",
        f"run {key} is not running; an update needs a live run",
    )
    assert await inbox(rig, key) == [("update:add", {"sku": "A1"})]
    assert CALLS["add"] == 1


async def test_a_sleeping_run_is_not_live(start: Start) -> None:
    rig = await start(classes=(Dozing,))
    key = await live_run(rig, "user.dozing", Dozing)

    async def sleeping() -> bool:
        try:
            reply = await rig.ask("store.run.get", run_key=key)
        except RemoteError:
            return False
        return bool(reply["run"]["state"] == "sleeping")

    await eventually(sleeping, "the run asleep", 10)
    refused = await rig.refused("scheduler.run.update", run=key, name="add", payload=1)
    assert (refused.code, refused.reason) == (
        "conflict",
        f"run {key} is not running; an update needs a live run",
    )
    assert await inbox(rig, key) == []
    assert CALLS["dozing-add"] == 0


def test_an_update_ask_is_read_strictly() -> None:
    ask = read_update({"run": "user.cart@1", "name": "add", "payload": [1]})
    assert tuple(ask) == ("user.cart@1", "add", [1])
    for bad in (
        {"run": "user.cart@1", "name": ""},
        {"run": "user.cart@1", "name": "x" * 94},
        {"run": "user.cart@1"},
        {"run": "nope", "name": "add"},
        {"run": "user.cart@1", "name": "add", "extra": 1},
    ):
        with pytest.raises(InvalidValue):
            read_update(bad)


async def test_a_live_ask_unanswered_in_time_is_none_and_a_late_answer_dropped() -> None:
    clock = FakeClock(datetime(2024, 5, 1, tzinfo=UTC))
    published: list[tuple[str, dict[str, Any]]] = []

    async def publish(topic: str, payload: dict[str, Any]) -> None:
        published.append((topic, payload))

    asks = LiveAsks(publish=publish, clock=clock)

    def push(ask_id: str) -> RunPush:
        return RunPush(
            run_key="user.cart@1", kind="update", query_id=ask_id, name="add", sender="a"
        )

    asked = asyncio.ensure_future(asks.ask("user.cart", push, wait_s=1.0))
    await eventually(lambda: len(asks) == 1, "the update pushed")
    ((topic, payload),) = published
    assert (topic, payload["kind"], payload["name"]) == (
        "scheduler.run.deliver.user",
        "update",
        "add",
    )
    clock.advance(1.1)
    assert await asked is None
    assert asks.answer(AnswerAsk(payload["query_id"], {"seq": 1}, None)) == {"accepted": False}
    # answered in time: taken
    asked = asyncio.ensure_future(asks.ask("user.cart", push, wait_s=1.0))
    await eventually(lambda: len(asks) == 1, "the update pushed")
    answer = AnswerAsk(published[-1][1]["query_id"], {"seq": 2, "result": "ok"}, None)
    assert asks.answer(answer) == {"accepted": True}
    assert await asked == answer
