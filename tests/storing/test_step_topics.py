"""``store.step.put`` and ``store.step.list`` on a real store actor over a real bus and file:
a step kept once, listed, read back as the store's records by the typed client; bad input refused
with ``invalid`` naming the field, having stored nothing; the default ACL lets executors and the
scheduler ask them, and nobody else.
"""

from __future__ import annotations

from typing import Any

import pytest

from actors.storing.client import StoreClient
from bus.acl import Acl, Roles
from config.bus import default_acl, default_roles
from store import InvalidValue, StepOutcome
from tests.store.conftest import at
from tests.storing.test_actor import Served

RUN = "user.report@1714564800000000"
STEP = {
    "run_key": RUN,
    "name": "collect",
    "status": "ok",
    "result": {"rows": [1, 2]},
    "attempts": 1,
    "started_at": "2024-05-01T12:00:00+00:00",
    "finished_at": "2024-05-01T12:00:01+00:00",
}


async def test_a_step_is_put_once_and_listed_over_the_bus(served: Served) -> None:
    first = await served.ask("store.step.put", **STEP)
    assert first["duplicate"] is False
    assert first["step"]["result"] == {"rows": [1, 2]}
    assert first["step"]["size_bytes"] > 0
    again = await served.ask("store.step.put", **(STEP | {"result": "other"}))
    assert (again["duplicate"], again["step"]) == (True, first["step"])
    listed = await served.ask("store.step.list", run_key=RUN)
    assert listed["steps"] == [first["step"]]
    assert (await served.ask("store.step.list", run_key="user.report@2"))["steps"] == []


async def test_the_client_puts_and_lists_the_store_s_records(
    served: Served, store: StoreClient
) -> None:
    outcome = StepOutcome(
        name="page[3]",
        status="ok",
        result=[1, "two", None],
        attempts=2,
        started_at=at(0),
        finished_at=at(2),
    )
    recorded = await store.put_step(RUN, outcome)
    assert not recorded.duplicate
    assert recorded.record == (await served.actor.store.run_steps(RUN))[0]
    failed = StepOutcome(
        name="upload", status="error", error="OSError: gone", started_at=at(3), finished_at=at(4)
    )
    await store.put_step(RUN, failed)
    steps = await store.run_steps(RUN)
    assert [(s.name, s.status, s.result, s.error, s.attempts) for s in steps] == [
        ("page[3]", "ok", [1, "two", None], None, 2),
        ("upload", "error", None, "OSError: gone", 1),
    ]
    with pytest.raises(InvalidValue) as oversize:
        await store.put_step(RUN, StepOutcome(**(_fields(outcome) | {"name": "big"})))
    assert oversize.value.field == "result"
    assert [s.name for s in await store.run_steps(RUN)] == ["page[3]", "upload"]


def _fields(outcome: StepOutcome) -> dict[str, Any]:
    return {
        "name": outcome.name,
        "status": outcome.status,
        "result": "x" * (64 * 1024 + 1),
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
    }


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"run_key": None}, "run_key: is required"),
        ({"run_key": 7}, "run_key: expected a string, got int"),
        ({"name": ""}, "name: must not be empty"),
        ({"status": "maybe"}, "status: expected ok or error"),
        ({"attempts": "1"}, "attempts: expected an integer, got str"),
        ({"attempts": 0}, "attempts: 0 is outside 1.."),
        ({"started_at": "yesterday"}, "started_at: 'yesterday' is not an ISO 8601"),
        ({"finished_at": "2024-05-01T11:00:00+00:00"}, "finished_at: is before started_at"),
        ({"result": "x" * (64 * 1024 + 1)}, "result: is 65"),
        ({"status": "error"}, "error: expected a string, got NoneType"),
        ({"status": "error", "error": "boom"}, "result: a failed step has no result"),
        ({"error": "boom"}, "error: a step that succeeded has no error"),
        ({"why": "x"}, "why: is not a field of this request"),
    ],
)
async def test_a_bad_step_is_refused_as_invalid_naming_the_field(
    served: Served, payload: dict[str, Any], reason: str
) -> None:
    request = {k: v for k, v in (STEP | payload).items() if v is not None}
    refusal = await served.refused("store.step.put", **request)
    assert refusal.code == "invalid"
    assert refusal.reason.startswith(reason), refusal.reason
    assert (await served.ask("store.step.list", run_key=RUN))["steps"] == []


async def test_a_bad_list_request_is_refused(served: Served) -> None:
    refusal = await served.refused("store.step.list")
    assert (refusal.code, refusal.reason) == ("invalid", "run_key: is required")
    refusal = await served.refused("store.step.list", run_key=RUN, limit=3)
    assert (refusal.code, refusal.reason) == ("invalid", "limit: is not a field of this request")


@pytest.mark.parametrize("topic", ["store.step.put", "store.step.list"])
def test_executors_and_the_scheduler_may_ask_the_step_topics_and_nobody_else(topic: str) -> None:
    acl = Acl(default_acl(), Roles(default_roles()))
    assert acl.allows("executor-1", "ask", topic)
    assert acl.allows("scheduler", "ask", topic)
    assert not acl.allows("cli", "ask", topic)
    assert not acl.allows("someone", "ask", topic)
