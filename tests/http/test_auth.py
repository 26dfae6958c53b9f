"""Who an HTTP request acts as: no token, a wrong, malformed or revoked one (401), an identity
the ACL or an owner check refuses (403), the browser's session cookie, and a tokens file others
could read."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.http.conftest import HttpTaskbus
from tests.http.test_rest_tasks import definition, error

OPEN = {("POST", "/session"), ("DELETE", "/session")}  # logging in and out need no token


def guarded_routes(http_taskbus: HttpTaskbus) -> list[tuple[str, str]]:
    """Every (method, path) of the REST API that needs a token, with sample path values."""
    from taskbus.http.app import taskbus_router  # noqa: PLC0415 - the router under test

    router = taskbus_router(http_taskbus.client, tokens=http_taskbus.book)
    found = []
    for route in router.routes:
        assert isinstance(route, APIRoute)
        for method in sorted(route.methods):
            if (method, route.path) not in OPEN:
                path = route.path.format(
                    task_id="user.x",
                    execution_id="00000000-0000-4000-8000-000000000000",
                    run="user.x@1",
                    name="n",
                )
                found.append((method, path))
    assert len(found) >= 20  # not vacuous
    return found


def unauthorized(reply: httpx.Response) -> str:
    assert reply.headers.get("www-authenticate") == "Bearer", reply.headers
    return error(reply, 401, "unauthorized")


async def test_every_route_refuses_a_request_without_a_token(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    for method, path in guarded_routes(http_taskbus):
        reply = await api.request(method, path)
        assert "no token" in unauthorized(reply), (method, path)


@pytest.mark.parametrize(
    "header",
    [
        "Bearer tb_not-a-token",
        "Bearer",
        "Basic YWxpY2U6c2VjcmV0",
        "tb_without_a_scheme",
    ],
)
async def test_a_wrong_or_malformed_token_is_401(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient, header: str
) -> None:
    http_taskbus.token("ana")  # there are tokens; this is not one of them
    unauthorized(await api.get("/tasks", headers={"Authorization": header}))


async def test_a_revoked_token_is_401_and_others_still_work(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana, bo = http_taskbus.auth("ana"), http_taskbus.auth("bo")
    assert (await api.get("/tasks", headers=ana)).status_code == 200

    http_taskbus.revoke("ana")  # as `taskbus keys token --revoke ana` does, server running

    assert "unknown or revoked" in unauthorized(await api.get("/tasks", headers=ana))
    assert (await api.get("/tasks", headers=bo)).status_code == 200
    assert (await api.get("/tasks", headers=http_taskbus.auth("ana"))).status_code == 200


async def test_an_identity_the_acl_refuses_is_403_with_the_brokers_reason(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    """scheduler.stats is for admins (docs/security.md#64-default-rules)."""
    reason = error(await api.get("/stats", headers=http_taskbus.auth("bo")), 403, "denied")
    assert reason == "'bo' may not ask 'scheduler.stats'"
    stats = await api.get("/stats", headers=http_taskbus.auth("cli"))
    assert stats.status_code == 200
    assert stats.json()["leader"]
    health = await api.get("/health", headers=http_taskbus.auth("bo"))  # open to everyone
    assert health.status_code == 200
    assert health.json()["status"] in {"healthy", "degraded", "critical"}


async def test_a_request_acts_as_its_tokens_identity(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    reply = await api.post("/tasks", json=definition(), headers=http_taskbus.auth("ana"))
    assert reply.json()["owner"] == "ana"
    reason = error(
        await api.post("/tasks/user.reflect/disable", headers=http_taskbus.auth("bo")),
        403,
        "denied",
    )
    assert reason.startswith("'bo' may not")
    admin = await api.post("/tasks/user.reflect/disable", headers=http_taskbus.auth("cli"))
    assert admin.json()["enabled"] is False  # an admin's token may


async def test_a_browser_session_is_a_checked_token_in_an_httponly_cookie(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    refused = await api.post("/session", json={"token": "tb_wrong"})
    unauthorized(refused)
    assert "set-cookie" not in refused.headers
    error(await api.post("/session", json={}), 422, "invalid")

    opened = await api.post("/session", json={"token": http_taskbus.token("ana")})
    assert opened.status_code == 200, opened.text
    assert opened.json() == {"identity": "ana"}
    cookie = opened.headers["set-cookie"]
    assert cookie.startswith("taskbus_token=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute.lower() in cookie.lower(), cookie
    assert (await api.get("/tasks")).status_code == 200  # the client sends the cookie back
    wrong_header = await api.get("/tasks", headers={"Authorization": "Bearer tb_wrong"})
    unauthorized(wrong_header)  # a header, when sent, is what counts

    closed = await api.delete("/session")
    assert closed.status_code == 204
    assert "max-age=0" in closed.headers["set-cookie"].lower()
    unauthorized(await api.get("/tasks"))


async def test_a_tokens_file_others_can_read_refuses_every_token(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    ana = http_taskbus.auth("ana")
    http_taskbus.book.path.chmod(0o644)
    reason = error(await api.get("/tasks", headers=ana), 503, "unavailable")
    assert "accessible to other users (mode 0644)" in reason
    assert "chmod 600" in reason
    http_taskbus.book.path.chmod(0o600)
    assert (await api.get("/tasks", headers=ana)).status_code == 200
