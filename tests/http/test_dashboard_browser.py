"""The dashboard in a real headless Chromium (Debian's ``chromium``, which scripts/test installs),
driven by Playwright against a real taskbus and uvicorn: sign in through the token form, see a
task created over the bus appear, see it update live when it runs, click "Trigger" and see the
run appear, open runs to see their steps and log lines, with no console error throughout.

The screenshot is saved in the test's tmp dir (the artefact); with ``TASKBUS_SCREENSHOT=<path>``
also there (``TASKBUS_SCREENSHOT=docs/images/dashboard.png`` refreshes the README's picture), so a
test run never changes the checkout.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    ViewportSize,
    async_playwright,
    expect,
)

from tests.http.conftest import HttpTaskbus

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
# This machine's network is closed: without these Chromium waits on services it cannot reach.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP: ViewportSize = {"width": 1366, "height": 900}
DEADLINE_MS = 30_000
REMINDER = "tasks.reminders:Reminder"
FAILS = "tests.http.http_tasks:Fails"
HEALTH_STATUS = re.compile(r"^(healthy|degraded|critical)$")  # as /health says, not "unknown"


@pytest.fixture
def chromium() -> Path:
    # A missing browser fails the test: a skipped browser test is not a passing dashboard.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: scripts/test installs Debian's chromium"
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def test_the_dashboard_follows_the_bus_live_and_triggers_runs(
    http_taskbus: HttpTaskbus, browser: Browser, tmp_path: Path
) -> None:
    expect.set_options(timeout=DEADLINE_MS)
    admin = http_taskbus.client
    context = await browser.new_context(viewport=LAPTOP, locale="en-GB", timezone_id="UTC")
    page = await context.new_page()
    console: list[ConsoleMessage] = []
    failures: list[str] = []

    def keep(message: ConsoleMessage) -> None:  # Playwright cannot take a bound builtin
        console.append(message)

    page.on("console", keep)
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.on("requestfailed", lambda request: failures.append(f"{request.method} {request.url}"))

    # Signed out, the page asks for a token; signing in makes an HttpOnly cookie.
    await page.goto(http_taskbus.url)
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#board")).to_be_hidden()
    await page.fill("#token", http_taskbus.token("cli"))
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#who")).to_have_text("signed in as cli")
    await expect(page.locator("#live")).to_have_text("live")  # /events subscribed
    await expect(page.locator("#health")).to_have_attribute("data-status", HEALTH_STATUS)
    assert await page.evaluate("() => document.cookie") == ""  # the token is not readable
    await page.evaluate("() => { window.sameDocument = true; }")  # gone if the page reloads

    # A task created over the bus appears, its next run in its own zone (the browser's is UTC).
    await admin.create(
        "user.reflect",
        REMINDER,
        "0 23 * * *",
        timezone="Europe/Berlin",
        config={"message": "time to reflect"},
    )
    reflect = page.locator('#task-rows tr[data-task-id="user.reflect"]')
    await expect(reflect).to_be_visible()
    await expect(reflect.locator("td").nth(4)).to_contain_text(re.compile(r"23:00:00 CES?T"))
    await expect(reflect.locator("td").nth(5)).to_have_text("0")

    # It runs (triggered over the bus): the row and the feed follow without a reload.
    await admin.trigger("user.reflect")
    await expect(reflect.locator("td").nth(5)).to_have_text("1")
    feed = page.locator('#feed-items li[data-task="user.reflect"]')
    await expect(feed.filter(has_text="succeeded")).to_have_count(1)

    # A click on Trigger starts a run, which appears in the task's history.
    await reflect.locator('button[data-action="trigger"]').click()
    await expect(page.locator("#message")).to_contain_text("triggered user.reflect: run ")
    message = await page.locator("#message").text_content()
    assert message is not None
    execution_id = message.rsplit(" ", 1)[1]
    history = page.locator("#history-rows tr")
    await expect(page.locator("#detail-id")).to_have_text("user.reflect")
    clicked = page.locator(f'#history-rows tr[data-execution-id="{execution_id}"]')
    await expect(clicked).to_have_attribute("data-outcome", "succeeded")
    await expect(history).to_have_count(2)
    await expect(reflect.locator("td").nth(5)).to_have_text("2")
    latest = (await admin.history("user.reflect", limit=1))[0]
    assert latest["execution_id"] == execution_id

    # Disable and enable from the page: the state follows what the scheduler stored.
    await reflect.locator('button[data-action="disable"]').click()
    await expect(reflect.locator("td").nth(2)).to_have_text("disabled")
    assert (await admin.get("user.reflect"))["enabled"] is False
    await reflect.locator('button[data-action="enable"]').click()
    await expect(reflect.locator("td").nth(2)).to_have_text("enabled")

    # Pause and unpause.
    await reflect.locator('button[data-action="pause"]').click()
    await expect(reflect.locator("td").nth(2)).to_have_text("paused")
    assert (await admin.get("user.reflect"))["paused"] is True
    await expect(reflect.locator("td").nth(4)).to_have_text("—")  # a paused task does not fire
    await reflect.locator('button[data-action="unpause"]').click()
    await expect(reflect.locator("td").nth(2)).to_have_text("enabled")

    # A run's log lines: the log cleanup task says what it kept.
    cleanup = page.locator('#task-rows tr[data-task-id="maintenance.log_cleanup"]')
    await cleanup.locator('button[data-action="trigger"]').click()
    await expect(page.locator("#detail-id")).to_have_text("maintenance.log_cleanup")
    await page.locator('#history-rows tr[data-outcome="succeeded"] button').first.click()
    await expect(page.locator("#run-logs li").first).to_contain_text("INFO")
    await expect(page.locator("#run-logs li").first).to_contain_text("retention:")

    # A run's steps: a failing step with its error.
    await admin.create("user.failing", FAILS, "@yearly", retry_policy={"max_attempts": 1})
    failing = page.locator('#task-rows tr[data-task-id="user.failing"]')
    await failing.locator('button[data-action="trigger"]').click()
    failed = page.locator('#history-rows tr[data-outcome="failed"]')
    await expect(failed).to_have_count(1)
    await failed.locator("button").click()
    step = page.locator('#step-rows tr[data-step="boom"]')
    await expect(step.locator("td").nth(1)).to_have_text("error")
    await expect(step).to_contain_text("boom")
    await expect(failing.locator("td").nth(5)).to_have_text("1 (1 failed)")

    assert await page.evaluate("() => window.sameDocument") is True
    errors = [f"{m.type}: {m.text}" for m in console if m.type == "error"]
    assert errors == [], errors
    assert failures == [], failures

    shots = [tmp_path / "dashboard.png"]
    if os.environ.get("TASKBUS_SCREENSHOT"):
        shots.append(ROOT / os.environ["TASKBUS_SCREENSHOT"])
    for where in shots:
        where.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(where), full_page=True)
    assert shots[0].stat().st_size > 10_000  # a page, not a blank

    # Signing out ends the session: the page asks for a token again, and the cookie is gone.
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    await expect(page.locator("#live")).to_have_text("not live")
    session = await page.evaluate("() => fetch('/dashboard/session').then((r) => r.json())")
    assert session == {"identity": None}
    await context.close()
