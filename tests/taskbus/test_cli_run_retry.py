"""``run retry`` and its client method (``TaskbusClient.retry_run``), in-process: the command
parsed, run against a client whose bus answers as the scheduler would, its asks and output
checked; a refusal is one line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bus import RemoteError
from config import topics
from taskbus.cli import exits
from tests.taskbus.test_cli_child_runs import scripted  # noqa: F401  (the fixture)
from tests.taskbus.test_cli_runs import RUN_KEY, Answer, ScriptedBus, a_run, cli, client_of

EXECUTION = "5b1f7a52-3c1e-4d7a-9a53-0d0c1f6e2b11"


def reply(deleted: list[str]) -> dict[str, Any]:
    return {
        "run": a_run(state="running", waiting=None, attempt=3),
        "execution_id": EXECUTION,
        "deleted_steps": deleted,
    }


async def test_the_client_asks_retry_with_and_without_a_step() -> None:
    bus = ScriptedBus(lambda topic, payload: reply(["two", "three"]))
    client = client_of(bus)
    assert await client.retry_run(RUN_KEY, from_step="two") == reply(["two", "three"])
    assert await client.retry_run(RUN_KEY) == reply(["two", "three"])
    assert bus.asked == [
        (topics.RUN_RETRY, {"run": RUN_KEY, "from_step": "two"}),
        (topics.RUN_RETRY, {"run": RUN_KEY}),
    ]
    assert topics.RUN_RETRY == "scheduler.run.retry"


def test_run_retry_prints_one_line_or_json(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    replies = iter([reply(["two", "three"]), reply([]), reply(["two"])])
    bus = scripted(lambda topic, payload: next(replies))
    code, out, _ = cli(["run", "retry", RUN_KEY, "--from-step", "two"], capsys, tmp_path)
    assert (code, out) == (
        0,
        f"retrying {RUN_KEY} as {EXECUTION}; steps run again: two, three\n",
    )
    code, out, _ = cli(["run", "retry", RUN_KEY], capsys, tmp_path)
    assert (code, out) == (0, f"retrying {RUN_KEY} as {EXECUTION}; no stored step runs again\n")
    code, out, _ = cli(["run", "retry", RUN_KEY, "--from-step", "two", "--json"], capsys, tmp_path)
    assert (code, json.loads(out)) == (0, reply(["two"]))
    assert bus.asked == [
        (topics.RUN_RETRY, {"run": RUN_KEY, "from_step": "two"}),
        (topics.RUN_RETRY, {"run": RUN_KEY}),
        (topics.RUN_RETRY, {"run": RUN_KEY, "from_step": "two"}),
    ]


def test_a_refused_retry_is_one_line_and_exit_1(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    def refuse(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise RemoteError("conflict", f"run {RUN_KEY} is running")

    scripted(refuse)
    code, out, err = cli(["run", "retry", RUN_KEY], capsys, tmp_path)
    assert (code, out) == (exits.EXIT_ERROR, "")
    assert err == f"taskbus: scheduler.run.retry: conflict: run {RUN_KEY} is running\n"
