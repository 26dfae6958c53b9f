"""The dashboard's server side over real HTTP: the page and its files with their security
headers, who a session is, and ``/events``, which relays what the caller's identity may see on
the bus and nothing else (the browser's view is tests/http/test_dashboard_browser.py)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from bus import Envelope
from config.errors import ConfigError
from taskbus.client import WATCH_TOPICS
from taskbus.http.dashboard import FILES, STATIC, dashboard_router, event_frame
from tests.bus.waits import eventually
from tests.http.conftest import HttpTaskbus

pytestmark = pytest.mark.timeout(90)
REMINDER = "tasks.reminders:Reminder"
DEADLINE_S = 30.0


@dataclass(frozen=True)
class Event:
    name: str
    data: Any


class EventStream:
    """``GET /events`` read frame by frame."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()
        self.comments = 0

    async def next(self) -> Event:
        name, data = "message", ""
        async for line in self.lines:
            if line.startswith(":"):
                self.comments += 1
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
            elif line.startswith("retry: "):
                continue
            elif not line and name != "message":
                return Event(name, json.loads(data))
        raise AssertionError("the stream ended")

    async def until(self, name: str, state: str, task_id: str) -> list[Event]:
        """Every event up to the first ``name`` event of ``task_id`` in ``state``, which ends
        the list."""
        seen: list[Event] = []

        async def read() -> list[Event]:
            while True:
                event = await self.next()
                seen.append(event)
                payload = event.data.get("payload", {})
                if (event.name, payload.get("state"), payload.get("task_id")) == (
                    name,
                    state,
                    task_id,
                ):
                    return seen

        try:
            return await asyncio.wait_for(read(), DEADLINE_S)
        except TimeoutError:
            raise AssertionError(f"no {name} {state} of {task_id}; got {seen}") from None


@asynccontextmanager
async def events(http: httpx.AsyncClient, headers: dict[str, str]) -> AsyncIterator[EventStream]:
    async with http.stream("GET", "/events", headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = EventStream(response)
        ready = await asyncio.wait_for(stream.next(), DEADLINE_S)
        assert ready.name == "ready", ready
        yield stream


async def test_the_page_and_its_files_are_served_with_a_strict_policy(
    http_taskbus: HttpTaskbus,
) -> None:
    async with httpx.AsyncClient(base_url=http_taskbus.url) as http:
        page = await http.get("/")  # no token: the page asks for one itself
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        assert '<script src="static/dashboard.js" defer></script>' in page.text
        for name, media_type in FILES.items():
            served = await http.get(f"/static/{name}")
            assert served.status_code == 200, name
            assert served.headers["content-type"] == media_type
            assert served.content == (STATIC / name).read_bytes()
        for name in ("nosuch.js", "..%2Fdashboard.py", "%2E%2E%2F__init__.py"):
            missing = await http.get(f"/static/{name}")
            assert missing.status_code == 404, name
            assert missing.json()["code"] == "not_found"


def test_nothing_in_the_page_comes_from_elsewhere_or_is_put_in_as_html() -> None:
    assert {path.name for path in STATIC.iterdir()} == set(FILES)  # each file served, no other
    script = (STATIC / "dashboard.js").read_text()
    for name in FILES:
        text = (STATIC / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", ""), name
        assert "https://" not in text, name
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "document.write" not in script
    assert "localStorage" not in script  # the token lives in an HttpOnly cookie only
    assert "sessionStorage" not in script


async def test_the_session_says_who_the_page_acts_as_and_200_without_one(
    http_taskbus: HttpTaskbus,
) -> None:
    async with httpx.AsyncClient(base_url=http_taskbus.url) as http:
        nobody = await http.get("/dashboard/session")
        assert (nobody.status_code, nobody.json()) == (200, {"identity": None})
        wrong = await http.get("/dashboard/session", headers={"Cookie": "taskbus_token=tb_no"})
        assert (wrong.status_code, wrong.json()) == (200, {"identity": None})
        login = await http.post("/session", json={"token": http_taskbus.token("alice")})
        assert login.status_code == 200, login.text
        signed_in = await http.get("/dashboard/session")  # the cookie httpx kept
        assert signed_in.json() == {"identity": "alice"}
        await http.delete("/session")
        http.cookies.clear()
        assert (await http.get("/dashboard/session")).json() == {"identity": None}


async def test_events_need_a_valid_token(http_taskbus: HttpTaskbus) -> None:
    async with httpx.AsyncClient(base_url=http_taskbus.url) as http:
        missing = await http.get("/events")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = await http.get("/events", headers={"Authorization": "Bearer tb_nope"})
        assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")


async def test_events_carry_the_callers_own_tasks_and_not_anothers(
    http_taskbus: HttpTaskbus,
) -> None:
    admin = http_taskbus.client
    await admin.create("user.theirs", REMINDER, "@yearly", config={"message": "not alice's"})
    async with (
        httpx.AsyncClient(base_url=http_taskbus.url, timeout=DEADLINE_S) as http,
        events(http, http_taskbus.auth("alice")) as alice,
        events(http, http_taskbus.auth("cli")) as cli,
    ):
        await admin.trigger("user.theirs")
        # The admin sees another's run; once it has its end, the broker has passed on every
        # event of that run, so alice's stream below would hold them if it carried any.
        await cli.until("status", "succeeded", "user.theirs")
        created = await http.post(
            "/tasks",
            headers=http_taskbus.auth("alice"),
            json={"task_id": "user.mine", "task_class": REMINDER, "schedule": "@yearly"},
        )
        assert created.status_code == 201, created.text
        await http.post("/tasks/user.mine/trigger", headers=http_taskbus.auth("alice"))
        seen = await alice.until("status", "succeeded", "user.mine")
        tasks = {event.data["payload"].get("task_id") for event in seen}
        assert tasks == {"user.mine"}, seen
        states = [event.data["payload"]["state"] for event in seen if event.name == "status"]
        assert states[0] == "defined"
        assert {"queued", "started", "succeeded"} <= set(states)
        first = seen[0].data
        assert first["topic"] == "scheduler.task.status.alice"
        assert first["sender"] == "scheduler"
        assert first["at"].endswith("+00:00")


async def test_a_stream_holds_a_subscription_until_its_browser_goes(
    http_taskbus: HttpTaskbus,
) -> None:
    async def alices() -> list[str]:
        reply = await http_taskbus.client.bus.ask("bus.peers", timeout=5)
        peers = [peer for peer in reply.payload["peers"] if peer["identity"] == "alice"]
        assert len(peers) == 1, peers  # one client per identity, whatever the streams
        return list(peers[0]["subscriptions"])

    async with httpx.AsyncClient(base_url=http_taskbus.url, timeout=DEADLINE_S) as http:
        async with events(http, http_taskbus.auth("alice")):
            assert await alices() == sorted(WATCH_TOPICS)
            async with events(http, http_taskbus.auth("alice")):
                assert await alices() == sorted(WATCH_TOPICS)

        async def given_back() -> bool:
            return await alices() == []

        await eventually(given_back, "alice's subscriptions given back", DEADLINE_S)


async def test_an_event_frame_is_json_on_one_line() -> None:
    envelope = Envelope(
        "scheduler.task.status.alice",
        {"task_id": "user.x", "state": "failed", "error": "line one\nline two", "raw": b"\x00"},
        sender="executor-user",
        timestamp=0.0,
    )
    text = event_frame(envelope)
    name, data, end = text.split("\n", 2)
    assert name == "event: status"
    assert end == "\n"
    assert json.loads(data.removeprefix("data: ")) == {
        "topic": "scheduler.task.status.alice",
        "sender": "executor-user",
        "at": "1970-01-01T00:00:00+00:00",
        "payload": {
            "task_id": "user.x",
            "state": "failed",
            "error": "line one\nline two",
            "raw": "AA==",
        },
    }


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"keepalive_s": 0}, "config dashboard.keepalive_s=0: expected a number of seconds > 0"),
        ({"max_streams": 0}, "config dashboard.max_streams=0: expected an integer >= 1"),
    ],
)
def test_a_bad_setting_is_refused_by_name(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        dashboard_router(**arguments)
    assert str(refused.value) == message
