"""Bounded input against one live ``taskbus up`` (real CURVE over tcp, a real encrypted store):
a definition nested too deeply to ever be sent back is refused at the door and nothing is stored;
odd stored values are shown by the CLI, never a traceback; and a reader that stops reading early
(``taskbus health | head -1``) ends the CLI quietly."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from bus import EnvelopeError, KeysDirectory, wire
from config import Settings, load_settings
from store import LibsqlStore, TaskSpec
from taskbus import Refused, TaskbusClient
from tests.bus.raw import RawPeer, envelope, nested, pack
from tests.e2e.procs import ROOT, free_port, running_up, taskbus

pytestmark = pytest.mark.timeout(180)

REMINDER = "tasks.reminders:Reminder"
DEEP = "tests.e2e.bounded_tasks:Deep"  # takes a map of any depth as its option ``d``


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("bounded") / "home"
    environment = {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TZ": "UTC",
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",
        "TASKBUS_SCHEDULER__TASK_MODULES": '["tests.e2e.bounded_tasks"]',
    }
    with running_up(environment):
        yield environment


@pytest.fixture(scope="module")
def settings(env: dict[str, str]) -> Settings:
    return load_settings(environ=env)


def cli(env: dict[str, str], *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    result = taskbus(env, *args)
    assert result.returncode == expect, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def task_ids(env: dict[str, str]) -> list[str]:
    return sorted(task["task_id"] for task in json.loads(cli(env, "task", "list", "--json").stdout))


def one_error_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    [line] = result.stderr.splitlines()
    assert line.startswith("taskbus: "), line
    for fragment in fragments:
        assert fragment in line, line


def deep_json(levels: int) -> str:
    return "[" * levels + "]" * levels


# ---------------------------------------------------------------- a definition too deep


async def test_a_create_nested_1020_deep_is_refused_by_the_client_and_nothing_is_stored(
    env: dict[str, str], settings: Settings
) -> None:
    before = task_ids(env)
    async with TaskbusClient.connect(settings) as client:
        await client.stats(wait_s=30)  # the scheduler leads
        with pytest.raises(EnvelopeError) as caught:
            await client.create("user.deep", REMINDER, "every 5m", config=nested(1020))
        assert caught.value.code == "payload"
        assert caught.value.reason == (
            "payload nests 1021 levels of maps and arrays, more than the limit of 32"
        )
    assert task_ids(env) == before
    one_error_line(cli(env, "task", "show", "user.deep", expect=1), "not_found")


async def test_a_create_nested_1020_deep_sent_past_the_client_is_refused_by_the_broker(
    env: dict[str, str], settings: Settings
) -> None:
    """A peer that does not use our client: the broker answers ERROR and keeps serving it."""
    before = task_ids(env)
    keys = KeysDirectory(settings.paths.keys_dir)
    context = zmq.asyncio.Context()
    peer = RawPeer.connect(
        context, env["TASKBUS_ENDPOINT"], keys.identity_keypair("cli"), keys.broker_public_key()
    )
    try:
        await peer.hello("cli")
        create = {
            "task_id": "user.deep",
            "task_class": REMINDER,
            "schedule": "every 5m",
            "config": nested(1020),
        }
        await peer.send(
            wire.REQUEST, pack([envelope(topic="scheduler.task.create", payload=create)])
        )
        error = await peer.expect_error()
        assert error["code"] == "payload"
        assert "nests 1021 levels" in error["reason"]
        assert "more than the limit of 32" in error["reason"]
        await peer.sync()  # still registered, still answered
    finally:
        peer.close()
        context.term()
    assert task_ids(env) == before


async def test_a_config_that_fits_the_bus_but_not_the_replies_is_refused_and_nothing_is_stored(
    env: dict[str, str], settings: Settings
) -> None:
    """25 levels pass the bus's limit of 32, but a reply that carries the stored config back
    (a task list puts it three levels deep) might not: the store keeps 8 levels for the replies
    and refuses it, precisely. 24 levels are stored and read back by every reply and the CLI."""
    before = task_ids(env)
    async with TaskbusClient.connect(settings) as client:
        await client.stats(wait_s=30)
        with pytest.raises(Refused) as caught:
            await client.create("user.deep", DEEP, "every 5m", config={"d": nested(24)})
        assert caught.value.code == "invalid"
        assert caught.value.reason == (
            "config: nests more than 24 levels of maps and arrays: a stored value leaves 8 of "
            "the bus's 32 to the replies that carry it"
        )
        assert task_ids(env) == before
        try:
            stored = await client.create("user.deep", DEEP, "every 5m", config={"d": nested(23)})
            assert stored["config"] == {"d": nested(23)}
            shown = json.loads(cli(env, "task", "show", "user.deep", "--json").stdout)
            assert shown["task"]["config"] == {"d": nested(23)}
            assert "user.deep" in task_ids(env)
        finally:
            await client.delete("user.deep")


def test_the_cli_refuses_a_deep_option_in_one_line_and_nothing_is_stored(
    env: dict[str, str],
) -> None:
    before = task_ids(env)
    create = ("task", "create", "user.deep", "--class", REMINDER, "--schedule", "every 5m")
    refused = cli(env, *create, "--option", f"nest={deep_json(40)}", expect=1)
    one_error_line(refused, "payload: payload nests 42 levels", "more than the limit of 32")
    # Deeper than Python's json module reads: it raised RecursionError, a traceback.
    refused = cli(env, *create, "--option", f"nest={deep_json(1020)}", expect=1)
    one_error_line(refused, "--option nest: the JSON value nests too deeply")
    assert task_ids(env) == before


# ---------------------------------------------------------------- odd stored values


async def test_odd_stored_values_are_shown_by_task_show_and_list_json(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Bytes, a bytes key and NaN are valid msgpack and kept as they were stored; json.dumps raised
    on each (TypeError, or NaN printed as invalid JSON). No task class takes such options, so a
    create refuses them now: the task is one a store written before holds, put in the file
    before taskbus starts on it."""
    config: dict[Any, Any] = {
        "message": "m",
        "blob": b"\x00\x01",
        b"raw": 1,
        "ratio": math.nan,
        "limit": -math.inf,
        "nest": nested(8),
    }
    own = {**env, "TASKBUS_HOME": str(tmp_path / "home"), "TASKBUS_ENDPOINT": free_endpoint()}
    store = LibsqlStore.from_settings(load_settings(environ=own), environ={})
    await store.start()
    try:
        spec = TaskSpec(task_id="user.odd", task_class=REMINDER, schedule="0 3 * * *")
        await store.put_task(replace(spec, config=config), now=datetime.now(UTC))
    finally:
        await store.close()
    with running_up(own):
        shown = cli(own, "task", "show", "user.odd").stdout
        [options] = [line for line in shown.splitlines() if line.startswith("options")]
        assert '"blob": "b\'\\\\x00\\\\x01\'"' in options, options
        assert "\"b'raw'\": 1" in options, options
        assert '"ratio": "<nan: not a JSON number>"' in options, options
        assert '"limit": "<-inf: not a JSON number>"' in options, options

        listed = json.loads(cli(own, "task", "list", "--json").stdout)  # strict JSON
        [odd] = [task for task in listed if task["task_id"] == "user.odd"]
        assert odd["config"] == {
            "message": "m",
            "blob": "b'\\x00\\x01'",
            "b'raw'": 1,
            "ratio": "<nan: not a JSON number>",
            "limit": "<-inf: not a JSON number>",
            "nest": nested(8),
        }
        shown_json = json.loads(cli(own, "task", "show", "user.odd", "--json").stdout)
        assert shown_json["task"]["config"] == odd["config"]


def free_endpoint() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


# ---------------------------------------------------------------- a reader gone early


def test_a_closed_stdout_ends_the_cli_quietly(env: dict[str, str]) -> None:
    """Closed before the CLI writes: every write fails, deterministically."""
    for command in (("health",), ("task", "list"), ("keys", "list")):
        reader, writer = os.pipe()
        os.close(reader)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "taskbus", *command],
                env=env,
                cwd=ROOT,
                stdout=writer,
                stderr=subprocess.PIPE,
                text=True,
                check=False,
                timeout=60,
            )
        finally:
            os.close(writer)
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr == "", (command, result.stderr)
        assert result.returncode == 0, (command, result.returncode)


def test_watch_ends_quietly_when_its_reader_stops_after_one_line(env: dict[str, str]) -> None:
    cli(env, "task", "create", "user.piped", "--class", REMINDER, "--schedule", "0 3 * * *")
    try:
        watch = subprocess.Popen(
            [sys.executable, "-m", "taskbus", "watch", "--topic", "user.reminder"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert watch.stdout is not None
            assert watch.stderr is not None
            # The banner goes to stderr (stdout carries events only); then the reader leaves.
            assert watch.stderr.readline().startswith("watching user.reminder")
            watch.stdout.close()  # like head -1
            cli(env, "task", "trigger", "user.piped")  # the next line it prints hits the pipe
            _, stderr = watch.communicate(timeout=60)
        finally:
            if watch.poll() is None:
                watch.kill()
                watch.communicate(timeout=10)
        assert "Traceback" not in stderr, stderr
        assert stderr == ""
        assert watch.returncode == 0
    finally:
        cli(env, "task", "delete", "user.piped")
