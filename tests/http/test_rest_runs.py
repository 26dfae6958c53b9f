"""``/runs`` over real HTTP against a real taskbus running real tasks: list, get with steps,
signal, query, cancel, pause, resume and retry, with good and bad input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.bus.waits import eventually
from tests.http.conftest import HttpTaskbus
from tests.http.test_rest_tasks import definition, error

APPROVAL = "tests.http.http_tasks:AwaitApproval"
FAILS = "tests.http.http_tasks:Fails"
UNKNOWN_RUN = "user.nope@1714546800000000"
DEADLINE_S = 30.0


async def start(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient, task_class: str, task_id: str
) -> dict[str, Any]:
    """Creates ``task_id`` as ana (no retries) and triggers it; the trigger's reply."""
    ana = http_taskbus.auth("ana")
    body = definition(task_id, task_class=task_class, retry_policy={"max_attempts": 1})
    assert (await api.post("/tasks", json=body, headers=ana)).status_code == 201
    reply = await api.post(f"/tasks/{task_id}/trigger", headers=ana)
    assert reply.status_code == 202, reply.text
    return dict(reply.json())


async def run_in(api: httpx.AsyncClient, headers: dict[str, str], key: str, state: str) -> None:
    async def there() -> bool:
        reply = await api.get("/runs", params={"state": state}, headers=headers)
        return key in {run["run_key"] for run in reply.json()["runs"]}

    await eventually(there, f"run {key} {state}", DEADLINE_S)


async def test_a_waiting_run_is_listed_queried_signalled_and_succeeds(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    started = await start(http_taskbus, api, APPROVAL, "user.approval")
    key = started["run"]
    await run_in(api, ana, key, "waiting")

    listed = await api.get("/runs", params={"task_id": "user.approval"}, headers=ana)
    [run] = listed.json()["runs"]
    assert (run["run_key"], run["state"], run["waiting"]) == (key, "waiting", "approve")
    assert listed.json()["runs"] == await http_taskbus.client.runs("user.approval")
    assert (await api.get("/runs", headers=http_taskbus.auth("bo"))).json() == {"runs": []}

    query = await api.get(f"/runs/{key}/query/stage", headers=ana)
    assert query.status_code == 200, query.text
    assert query.json()["answer"] == {"stage": "waiting", "task": "user.approval"}
    error(await api.get(f"/runs/{key}/query/nosuch", headers=ana), 404, "not_found")

    signalled = await api.post(
        f"/runs/{key}/signal", json={"name": "approve", "payload": {"by": "ana"}}, headers=ana
    )
    assert signalled.status_code == 200, signalled.text
    assert signalled.json()["run"]["run_key"] == key
    assert signalled.json()["seq"] >= 1
    await run_in(api, ana, key, "succeeded")

    detail = await api.get(f"/runs/{started['execution_id']}", headers=ana)
    assert detail.status_code == 200, detail.text
    assert detail.json()["run"]["execution_id"] == started["execution_id"]
    assert detail.json() == await http_taskbus.client.run(started["execution_id"])
    after = await api.post(f"/runs/{key}/signal", json={"name": "approve"}, headers=ana)
    assert key in error(after, 409, "conflict")


async def test_signal_refuses_bad_input(http_taskbus: HttpTaskbus, api: httpx.AsyncClient) -> None:
    ana = http_taskbus.auth("ana")
    key = (await start(http_taskbus, api, APPROVAL, "user.approval"))["run"]
    await run_in(api, ana, key, "waiting")

    error(await api.post(f"/runs/{key}/signal", json={}, headers=ana), 422, "invalid")
    error(await api.post(f"/runs/{key}/signal", json={"name": 3}, headers=ana), 422, "invalid")
    error(
        await api.post(f"/runs/{key}/signal", json={"name": "update:x"}, headers=ana),
        422,
        "invalid",
    )
    error(
        await api.post(
            f"/runs/{key}/signal", json={"name": "approve"}, headers=http_taskbus.auth("bo")
        ),
        403,
        "denied",
    )
    [run] = (await api.get("/runs", headers=ana)).json()["runs"]
    assert (run["state"], run["signals"]) == ("waiting", 0)  # nothing was kept


async def test_pause_resume_and_cancel_a_run(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    key = (await start(http_taskbus, api, APPROVAL, "user.approval"))["run"]
    await run_in(api, ana, key, "waiting")

    paused = await api.post(f"/runs/{key}/pause", headers=ana)
    assert paused.status_code == 200, paused.text
    assert paused.json()["run"]["paused"] is True
    resumed = await api.post(f"/runs/{key}/resume", headers=ana)
    assert resumed.json()["run"]["paused"] is False
    error(await api.post(f"/runs/{key}/cancel", headers=http_taskbus.auth("bo")), 403, "denied")
    error(await api.post(f"/runs/{key}/cancel", json={"why": "x"}, headers=ana), 422, "invalid")

    cancelled = await api.post(f"/runs/{key}/cancel", json={"reason": "not needed"}, headers=ana)
    assert cancelled.status_code == 200, cancelled.text
    assert (cancelled.json()["run"]["state"], cancelled.json()["run"]["reason"]) == (
        "cancelled",
        "not needed",
    )
    again = await api.post(f"/runs/{key}/cancel", headers=ana)
    assert again.json()["run"]["state"] == "cancelled"  # a no-op
    error(await api.post(f"/runs/{key}/pause", headers=ana), 409, "conflict")


async def test_a_failed_run_is_retried_as_a_new_attempt(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    started = await start(http_taskbus, api, FAILS, "user.fails")

    async def failed() -> bool:
        runs = (await api.get("/tasks/user.fails/history", headers=ana)).json()["executions"]
        return bool(runs) and runs[0]["success"] is False

    await eventually(failed, "the run failed", DEADLINE_S)
    detail = (await api.get(f"/runs/{started['execution_id']}", headers=ana)).json()
    assert [(step["name"], step["status"]) for step in detail["steps"]] == [("boom", "error")]
    error(
        await api.post(f"/runs/{started['run']}/retry", json={"from_step": "nosuch"}, headers=ana),
        404,
        "not_found",
    )

    retried = await api.post(f"/runs/{started['run']}/retry", headers=ana)
    assert retried.status_code == 200, retried.text
    body = retried.json()
    assert body["execution_id"] != started["execution_id"]
    assert body["deleted_steps"] == ["boom"]
    assert body["run"]["run_key"] == started["run"]
    error(
        await api.post(f"/runs/{started['run']}/retry", json={"from_step": 1}, headers=ana),
        422,
        "invalid",
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", f"/runs/{UNKNOWN_RUN}/signal", {"name": "approve"}),
        ("GET", f"/runs/{UNKNOWN_RUN}/query/stage", None),
        ("POST", f"/runs/{UNKNOWN_RUN}/cancel", None),
        ("POST", f"/runs/{UNKNOWN_RUN}/pause", None),
        ("POST", f"/runs/{UNKNOWN_RUN}/resume", None),
        ("POST", f"/runs/{UNKNOWN_RUN}/retry", None),
        ("GET", "/runs/00000000-0000-4000-8000-000000000000", None),
    ],
)
async def test_every_run_route_answers_an_unknown_run_404(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient, method: str, path: str, body: Any
) -> None:
    reply = await api.request(method, path, json=body, headers=http_taskbus.auth("cli"))
    error(reply, 404, "not_found")


async def test_run_routes_refuse_malformed_input(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    cli = http_taskbus.auth("cli")
    assert "execution_id" in error(await api.get("/runs/not-a-uuid", headers=cli), 422, "invalid")
    error(await api.get("/runs", params={"state": "asleep"}, headers=cli), 422, "invalid")
    error(await api.get("/runs", params={"limit": 0}, headers=cli), 422, "invalid")
