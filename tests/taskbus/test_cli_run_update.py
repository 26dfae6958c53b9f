"""``run update`` and ``TaskbusClient.update_run``, in-process: the command parsed, run against
a client whose bus answers as the scheduler would, its ask and output checked; a refusal is one
line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bus import RemoteError
from config import topics
from taskbus.cli import exits, parser
from taskbus.cli import run as runs
from tests.taskbus.test_cli_child_runs import scripted  # noqa: F401 - the fixture
from tests.taskbus.test_cli_runs import RUN_KEY, Answer, ScriptedBus, cli, client_of

REPLY = {"run": RUN_KEY, "seq": 7, "result": {"items": 2}}


def test_run_update_parses() -> None:
    build = parser.build()
    args = build.parse_args(["run", "update", RUN_KEY, "add", "--payload", '{"sku": "A1"}'])
    assert (args.func, args.run, args.name, args.payload, args.json) == (
        runs.update,
        RUN_KEY,
        "add",
        '{"sku": "A1"}',
        False,
    )
    with pytest.raises(SystemExit) as exited:
        build.parse_args(["run", "update", RUN_KEY])
    assert exited.value.code == 2


async def test_the_client_asks_update() -> None:
    bus = ScriptedBus(lambda topic, payload: REPLY)
    client = client_of(bus)
    assert await client.update_run(RUN_KEY, "add", {"sku": "A1"}) == REPLY
    assert await client.update_run(RUN_KEY, "clear") == REPLY
    assert bus.asked == [
        (topics.RUN_UPDATE, {"run": RUN_KEY, "name": "add", "payload": {"sku": "A1"}}),
        (topics.RUN_UPDATE, {"run": RUN_KEY, "name": "clear"}),
    ]
    assert topics.RUN_UPDATE == "scheduler.run.update"


def test_run_update_prints_the_result_or_json(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    bus = scripted(lambda topic, payload: REPLY)
    argv = ["run", "update", RUN_KEY, "add", "--payload", '{"sku": "A1"}']
    code, out, _ = cli(argv, capsys, tmp_path)
    expected = f'update add of {RUN_KEY} taken as signal 7, result:\n{{\n  "items": 2\n}}\n'
    assert (code, out) == (0, expected)
    code, out, _ = cli([*argv, "--json"], capsys, tmp_path)
    assert (code, json.loads(out)) == (0, REPLY)
    asked = (topics.RUN_UPDATE, {"run": RUN_KEY, "name": "add", "payload": {"sku": "A1"}})
    assert bus.asked == [asked] * 2


def test_a_refused_update_is_one_line_and_exit_1(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    reason = f"run {RUN_KEY} is not running; an update needs a live run"

    def refuse(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise RemoteError("conflict", reason)

    scripted(refuse)
    code, out, err = cli(["run", "update", RUN_KEY, "add"], capsys, tmp_path)
    assert (code, out) == (exits.EXIT_ERROR, "")
    assert err == f"taskbus: scheduler.run.update: conflict: {reason}\n"
