"""``/tasks`` over real HTTP against a real taskbus: every route with good and bad input, its
status codes and ``{code, reason}`` errors, and what the bus then holds."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from taskbus.client import TaskbusClient
from tests.bus.waits import eventually
from tests.http.conftest import HttpTaskbus

REMINDER = "tasks.reminders:Reminder"
FAILS = "tests.http.http_tasks:Fails"
NEVER = "0 0 1 1 *"  # once a year: nothing fires during a test


def definition(task_id: str = "user.reflect", **fields: Any) -> dict[str, Any]:
    return {"task_id": task_id, "task_class": REMINDER, "schedule": NEVER, **fields}


def error(reply: httpx.Response, status: int, code: str) -> str:
    """The reason of an error reply, once its status and code are checked."""
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"code", "reason"}, body
    assert body["code"] == code, body
    return str(body["reason"])


async def created(api: httpx.AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    reply = await api.post("/tasks", json=definition(**fields), headers=headers)
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


async def test_a_task_created_over_http_is_the_one_created_over_the_bus(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    fields = {
        "timezone": "Europe/Berlin",
        "config": {"message": "time to reflect"},
        "retry_policy": {"max_attempts": 2},
        "enabled": False,
    }
    over_http = await created(api, ana, task_id="user.by_http", **fields)
    async with TaskbusClient.connect(
        http_taskbus.settings, identity="ana", endpoint=http_taskbus.settings.paths.ipc_endpoint
    ) as bus:
        over_bus = await bus.create("user.by_bus", REMINDER, NEVER, **fields)  # type: ignore[arg-type]
        stored_http, stored_bus = await bus.get("user.by_http"), await bus.get("user.by_bus")

    volatile = {"task_id", "created_at", "updated_at", "accounted_through", "next_run"}

    def same(task: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in task.items() if key not in volatile}

    assert same(over_http) == same(over_bus) == same(stored_http) == same(stored_bus)
    assert over_http == stored_http  # the reply is the stored task, times as ISO 8601
    assert over_http["owner"] == "ana"
    assert over_http["config"] == {"message": "time to reflect"}


async def test_list_shows_an_admin_every_task_and_anyone_else_their_own(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    await created(api, http_taskbus.auth("ana"), task_id="user.ana")
    await created(api, http_taskbus.auth("bo"), task_id="user.bo")

    admin = await api.get("/tasks", headers=http_taskbus.auth("cli"))
    ana = await api.get("/tasks", headers=http_taskbus.auth("ana"))
    with_status = await api.get(
        "/tasks", params={"with_status": "true"}, headers=http_taskbus.auth("ana")
    )

    assert admin.status_code == ana.status_code == with_status.status_code == 200
    every = {task["task_id"] for task in admin.json()["tasks"]}
    assert {"user.ana", "user.bo", "maintenance.health_check"} <= every
    assert every == {task["task_id"] for task in await http_taskbus.client.tasks()}
    assert [task["task_id"] for task in ana.json()["tasks"]] == ["user.ana"]
    [task] = with_status.json()["tasks"]
    assert task["status"]["runs"] == 0
    assert "next_fire" in task
    error(
        await api.get("/tasks", params={"with_status": "maybe"}, headers=http_taskbus.auth("ana")),
        422,
        "invalid",
    )


async def test_create_refuses_bad_input_and_stores_nothing(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    missing = error(
        await api.post("/tasks", json={"task_id": "user.x"}, headers=ana), 422, "invalid"
    )
    assert "body.task_class: Field required" in missing
    assert "body.schedule: Field required" in missing
    wrong_type = error(
        await api.post("/tasks", json=definition(config=[1, 2]), headers=ana), 422, "invalid"
    )
    assert wrong_type.startswith("body.config:")
    unknown = error(
        await api.post("/tasks", json=definition(colour="red"), headers=ana), 422, "invalid"
    )
    assert "body.colour: Extra inputs are not permitted" in unknown
    not_json = await api.post(
        "/tasks", content=b"{not json", headers={**ana, "content-type": "application/json"}
    )
    error(not_json, 422, "invalid")
    huge = json.dumps(definition(config={"message": "x" * (2 * 1024 * 1024)})).encode()
    sized = {**ana, "content-type": "application/json"}
    error(await api.post("/tasks", content=huge, headers=sized), 413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: cut off as it arrives
        for at in range(0, len(huge), 64 * 1024):
            yield huge[at : at + 64 * 1024]

    error(await api.post("/tasks", content=chunks(), headers=sized), 413, "too_large")
    schedule = error(
        await api.post("/tasks", json=definition(schedule="every blue moon"), headers=ana),
        422,
        "invalid",
    )
    assert "schedule" in schedule  # the scheduler's own reason, naming the field
    category = error(
        await api.post("/tasks", json=definition(task_id="security.mine"), headers=ana),
        403,
        "denied",
    )
    assert "security.mine" in category

    assert [
        task["task_id"] for task in await http_taskbus.client.tasks() if task["owner"] == "ana"
    ] == []


async def test_create_of_an_existing_id_is_409(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    await created(api, http_taskbus.auth("ana"))
    error(
        await api.post("/tasks", json=definition(), headers=http_taskbus.auth("ana")), 409, "exists"
    )
    taken = await api.post("/tasks", json=definition(), headers=http_taskbus.auth("bo"))
    assert taken.status_code == 409, taken.text
    assert (await http_taskbus.client.get("user.reflect"))["owner"] == "ana"


async def test_get_update_delete(http_taskbus: HttpTaskbus, api: httpx.AsyncClient) -> None:
    ana = http_taskbus.auth("ana")
    task = await created(api, ana)

    got = await api.get("/tasks/user.reflect", headers=ana)
    assert got.status_code == 200
    assert got.json() == task
    changed = await api.patch(
        "/tasks/user.reflect",
        json={"schedule": "0 23 * * *", "timezone": "Europe/Berlin", "expected_version": 1},
        headers=ana,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["schedule"], changed.json()["version"]) == ("0 23 * * *", 2)
    assert (await http_taskbus.client.get("user.reflect"))["timezone"] == "Europe/Berlin"

    stale = error(
        await api.patch(
            "/tasks/user.reflect", json={"schedule": NEVER, "expected_version": 1}, headers=ana
        ),
        409,
        "conflict",
    )
    assert "version" in stale
    error(
        await api.patch("/tasks/user.reflect", json={"expected_version": "two"}, headers=ana),
        422,
        "invalid",
    )
    error(
        await api.patch("/tasks/user.reflect", json={"task_id": "user.other"}, headers=ana),
        422,
        "invalid",
    )
    error(
        await api.patch("/tasks/user.reflect", json={"timezone": "Mars/Olympus"}, headers=ana),
        422,
        "invalid",
    )
    assert (await http_taskbus.client.get("user.reflect"))["version"] == 2  # nothing changed

    deleted = await api.delete("/tasks/user.reflect", headers=ana)
    assert deleted.status_code == 204
    assert deleted.content == b""
    error(await api.get("/tasks/user.reflect", headers=ana), 404, "not_found")
    error(await api.delete("/tasks/user.reflect", headers=ana), 404, "not_found")
    error(
        await api.delete("/tasks/maintenance.health_check", headers=http_taskbus.auth("cli")),
        403,
        "denied",
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/tasks/user.nope", None),
        ("PATCH", "/tasks/user.nope", {"schedule": NEVER}),
        ("DELETE", "/tasks/user.nope", None),
        ("POST", "/tasks/user.nope/enable", None),
        ("POST", "/tasks/user.nope/disable", None),
        ("POST", "/tasks/user.nope/trigger", None),
        ("POST", "/tasks/user.nope/pause", None),
        ("POST", "/tasks/user.nope/unpause", None),
        ("GET", "/tasks/user.nope/history", None),
        ("GET", "/tasks/user.nope/missed", None),
    ],
)
async def test_every_task_route_answers_an_unknown_task_404(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    reply = await api.request(method, path, json=body, headers=http_taskbus.auth("cli"))
    assert "user.nope" in error(reply, 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/tasks/user.reflect", None),
        ("PATCH", "/tasks/user.reflect", {"schedule": "0 1 * * *"}),
        ("DELETE", "/tasks/user.reflect", None),
        ("POST", "/tasks/user.reflect/enable", None),
        ("POST", "/tasks/user.reflect/disable", None),
        ("POST", "/tasks/user.reflect/trigger", None),
        ("POST", "/tasks/user.reflect/pause", None),
        ("POST", "/tasks/user.reflect/unpause", None),
        ("GET", "/tasks/user.reflect/history", None),
        ("GET", "/tasks/user.reflect/missed", None),
    ],
)
async def test_every_task_route_denies_another_identity_and_changes_nothing(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    before = await created(api, http_taskbus.auth("ana"))
    reply = await api.request(method, path, json=body, headers=http_taskbus.auth("bo"))
    reason = error(reply, 403, "denied")
    assert "'bo'" in reason
    assert "ana" not in reason  # a refusal never names the owner
    assert await http_taskbus.client.get("user.reflect") == before
    assert await http_taskbus.client.history("user.reflect") == []


async def test_enable_disable_pause_unpause(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    await created(api, ana)

    disabled = await api.post("/tasks/user.reflect/disable", headers=ana)
    assert disabled.status_code == 200
    assert disabled.json()["enabled"] is False
    enabled = await api.post("/tasks/user.reflect/enable", headers=ana)
    assert enabled.json()["enabled"] is True
    paused = await api.post("/tasks/user.reflect/pause", json={"note": "vendor down"}, headers=ana)
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["note"]) == (True, "vendor down")
    assert (await http_taskbus.client.get("user.reflect"))["paused"] is True
    error(
        await api.post("/tasks/user.reflect/pause", json={"note": "x" * 501}, headers=ana),
        422,
        "invalid",
    )
    error(
        await api.post("/tasks/user.reflect/pause", json={"why": "x"}, headers=ana), 422, "invalid"
    )
    unpaused = await api.post("/tasks/user.reflect/unpause", headers=ana)
    assert unpaused.status_code == 200
    assert (unpaused.json()["paused"], unpaused.json()["note"]) == (False, None)
    assert "missed" in unpaused.json()


async def test_trigger_runs_the_task_and_its_history_shows_the_run(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    await created(api, ana, config={"message": "now"})

    triggered = await api.post("/tasks/user.reflect/trigger", headers=ana)
    assert triggered.status_code == 202, triggered.text
    started = triggered.json()
    assert started["task_id"] == "user.reflect"
    assert started["run"].startswith("user.reflect@")
    assert started["duplicate"] is False

    async def succeeded() -> bool:
        reply = await api.get("/tasks/user.reflect/history", headers=ana)
        runs = reply.json()["executions"]
        return bool(runs) and runs[0]["success"] is True

    await eventually(succeeded, "the triggered run succeeded", 30)
    history = (
        await api.get("/tasks/user.reflect/history", params={"limit": 5}, headers=ana)
    ).json()
    [run] = history["executions"]
    assert run["execution_id"] == started["execution_id"]
    assert run["trigger"] == "trigger"
    assert history["executions"] == await http_taskbus.client.history("user.reflect", limit=5)
    error(
        await api.get("/tasks/user.reflect/history", params={"limit": 0}, headers=ana),
        422,
        "invalid",
    )
    missed = await api.get("/tasks/user.reflect/missed", headers=ana)
    assert missed.status_code == 200
    assert missed.json() == {"missed": []}


async def test_a_trigger_key_starts_one_run(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    await created(api, ana)
    first = await api.post("/tasks/user.reflect/trigger", json={"key": "2026-05-01"}, headers=ana)
    again = await api.post("/tasks/user.reflect/trigger", json={"key": "2026-05-01"}, headers=ana)
    assert first.status_code == again.status_code == 202
    assert again.json()["duplicate"] is True
    assert again.json()["run"] == first.json()["run"]
    error(
        await api.post("/tasks/user.reflect/trigger", json={"key": ""}, headers=ana), 422, "invalid"
    )
    error(
        await api.post("/tasks/user.reflect/trigger", json={"key": 7}, headers=ana), 422, "invalid"
    )
