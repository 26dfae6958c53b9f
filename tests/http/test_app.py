"""The app as a whole: the OpenAPI document lists every route, the router mounts as is in
another FastAPI app (errors still ``{code, reason}``), addresses are checked, and ``import
taskbus`` stays free of FastAPI."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from bus import KeysDirectory
from taskbus.client import TaskbusClient
from taskbus.http import HttpAddress, HttpServer, TokenBook, taskbus_router
from taskbus.http.serving import HttpAddressError, require_local
from tests.http.conftest import HttpTaskbus
from tests.http.test_rest_tasks import definition, error

ROOT = Path(__file__).resolve().parents[2]
ROUTES = {
    ("GET", "/tasks"),
    ("POST", "/tasks"),
    ("GET", "/tasks/{task_id}"),
    ("PATCH", "/tasks/{task_id}"),
    ("DELETE", "/tasks/{task_id}"),
    ("POST", "/tasks/{task_id}/enable"),
    ("POST", "/tasks/{task_id}/disable"),
    ("POST", "/tasks/{task_id}/trigger"),
    ("POST", "/tasks/{task_id}/pause"),
    ("POST", "/tasks/{task_id}/unpause"),
    ("GET", "/tasks/{task_id}/history"),
    ("GET", "/tasks/{task_id}/missed"),
    ("GET", "/runs"),
    ("GET", "/runs/{execution_id}"),
    ("POST", "/runs/{run}/signal"),
    ("GET", "/runs/{run}/query/{name}"),
    ("POST", "/runs/{run}/cancel"),
    ("POST", "/runs/{run}/pause"),
    ("POST", "/runs/{run}/resume"),
    ("POST", "/runs/{run}/retry"),
    ("GET", "/health"),
    ("GET", "/stats"),
    ("POST", "/session"),
    ("DELETE", "/session"),
}


REST_ROOTS = {"tasks", "runs", "health", "stats", "session"}


def routes_of(router: APIRouter) -> set[tuple[str, str]]:
    return {
        (method, route.path)
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods
    }


async def test_the_openapi_document_lists_every_route(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    reply = await api.get("/openapi.json")  # it describes, it reads nothing: no token
    assert reply.status_code == 200
    document = reply.json()
    listed = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }
    router = taskbus_router(http_taskbus.client, tokens=http_taskbus.book)
    assert routes_of(router) == ROUTES  # the REST API is these routes...
    rest = {(method, path) for method, path in listed if path.split("/")[1] in REST_ROOTS}
    assert rest == ROUTES  # ...and the document lists each
    create = document["paths"]["/tasks"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/TaskCreate"
    )
    assert set(create["responses"]) >= {"201", "401", "403", "409", "422", "503"}
    assert document["components"]["schemas"]["ErrorBody"]["required"] == ["code", "reason"]


def test_docs_http_md_names_every_route() -> None:
    text = (ROOT / "docs" / "http.md").read_text()
    missing = [
        f"{method} {path}" for method, path in sorted(ROUTES) if f"`{method} {path}`" not in text
    ]
    assert not missing, missing


async def test_unknown_paths_and_methods_answer_code_and_reason(
    http_taskbus: HttpTaskbus, api: httpx.AsyncClient
) -> None:
    error(await api.get("/nowhere", headers=http_taskbus.auth("cli")), 404, "not_found")
    error(await api.put("/tasks", headers=http_taskbus.auth("cli")), 405, "method_not_allowed")


@pytest.fixture
async def ana_client(http_taskbus: HttpTaskbus) -> AsyncIterator[TaskbusClient]:
    http_taskbus.keys.identity_keypair("ana", create=True)
    async with TaskbusClient.connect(
        http_taskbus.settings, identity="ana", endpoint=http_taskbus.settings.paths.ipc_endpoint
    ) as client:
        yield client


async def test_the_router_mounts_in_another_app_acting_as_its_one_client(
    http_taskbus: HttpTaskbus, ana_client: TaskbusClient
) -> None:
    """As an embedding (AICO) mounts it: one client, a prefix, no handlers of its own."""
    host = FastAPI()
    host.include_router(taskbus_router(ana_client, tokens=http_taskbus.book), prefix="/taskbus")
    server = HttpServer(host, HttpAddress("127.0.0.1", 0))
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url + "/taskbus") as api:
            ana = http_taskbus.auth("ana")
            created = await api.post("/tasks", json=definition(), headers=ana)
            assert created.status_code == 201, created.text
            assert created.json()["owner"] == "ana"
            error(await api.get("/tasks/user.nope", headers=ana), 404, "not_found")
            error(await api.post("/tasks", json={}, headers=ana), 422, "invalid")
            reason = error(await api.get("/tasks", headers=http_taskbus.auth("cli")), 403, "denied")
            assert reason == "this server acts only as 'ana'; the token is 'cli''s"
            error(await api.get("/tasks"), 401, "unauthorized")
    finally:
        await server.stop()


async def test_the_router_reads_the_tokens_of_the_default_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, http_taskbus: HttpTaskbus
) -> None:
    """``taskbus_router(client)`` alone: the tokens of ``load_settings()``'s keys directory."""
    elsewhere = KeysDirectory(tmp_path / "elsewhere" / "keys")
    elsewhere.identity_keypair("cli", create=True)
    token = TokenBook(elsewhere).issue("cli").token
    monkeypatch.setenv("TASKBUS_HOME", str(tmp_path / "elsewhere"))
    host = FastAPI()
    host.include_router(taskbus_router(http_taskbus.client))
    server = HttpServer(host, HttpAddress("127.0.0.1", 0))
    url = await server.start()
    try:
        async with httpx.AsyncClient(base_url=url) as api:
            mine = await api.get("/health", headers={"Authorization": f"Bearer {token}"})
            assert mine.status_code == 200, mine.text
            error(await api.get("/health", headers=http_taskbus.auth("cli")), 401, "unauthorized")
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:7421", "127.0.0.1", 7421),
        ("127.0.0.1", "127.0.0.1", 7421),
        (":8080", "127.0.0.1", 8080),
        ("localhost:0", "localhost", 0),
        ("[::1]:9000", "::1", 9000),
        ("0.0.0.0:80", "0.0.0.0", 80),
    ],
)
def test_http_addresses_parse(text: str, host: str, port: int) -> None:
    assert HttpAddress.parse(text) == HttpAddress(host, port)


@pytest.mark.parametrize("text", ["127.0.0.1:http", "127.0.0.1:70000", "[::1]9000", "[::1"])
def test_a_malformed_http_address_is_refused(text: str) -> None:
    with pytest.raises(HttpAddressError, match=re.escape(f"--http {text!r}:")):
        HttpAddress.parse(text)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_are_served(host: str) -> None:
    assert require_local(HttpAddress(host, 1), allow_remote=False).host == host


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "::", "example.com"])
def test_a_remote_address_needs_consent(host: str) -> None:
    with pytest.raises(HttpAddressError, match=r"not a loopback address.*--http-allow-remote"):
        require_local(HttpAddress(host, 1), allow_remote=False)
    assert require_local(HttpAddress(host, 1), allow_remote=True).host == host


async def test_a_taken_port_fails_at_once_with_one_message(taken_port: int) -> None:
    server = HttpServer(FastAPI(), HttpAddress("127.0.0.1", taken_port))
    with pytest.raises(
        HttpAddressError, match=f"cannot listen on http://127.0.0.1:{taken_port}: Address already"
    ):
        await server.start()
    await server.stop()


@pytest.mark.parametrize("module", ["taskbus", "taskbus.cli", "taskbus.http.tokens"])
def test_importing_taskbus_does_not_import_fastapi(module: str) -> None:
    probe = (
        f"import sys, {module}; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn', 'pydantic') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout == "[]\n"
