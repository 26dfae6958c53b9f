"""The durable-run commands (``run list``, ``run signal``, ``run cancel``, ``run pause``,
``run resume``, ``task trigger --key``) and their client methods, in-process: each command is
parsed, run against a client whose bus answers as the scheduler would, and its asks and its
output checked; errors end in one line and the CLI's exit codes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bus import Envelope, RemoteError
from config import topics
from config.errors import TaskbusError
from taskbus import Started, TaskbusClient
from taskbus.cli import _remote, exits, main, parser
from taskbus.cli import format as fmt
from taskbus.cli import run as runs
from taskbus.cli import task as tasks

RUN_KEY = "user.approval@1714546800000000"
EXECUTION_ID = "01a24965-3822-7000-826a-7039c2070fab"
NOW = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)


def a_run(**changes: Any) -> dict[str, Any]:
    """A run as the scheduler's replies carry it (the store's RunRecord, plain)."""
    run: dict[str, Any] = {
        "run_key": RUN_KEY,
        "task_id": "user.approval",
        "scheduled_at": "2024-05-01T07:00:00+00:00",
        "state": "waiting",
        "paused": False,
        "wake_at": None,
        "waiting": "approve",
        "consumed": 0,
        "attempt": 2,
        "wakes": 1,
        "parent_key": None,
        "spawn_key": None,
        "start_key": None,
        "reason": None,
        "created_at": "2024-05-01T07:00:00+00:00",
        "updated_at": "2024-05-01T07:00:01+00:00",
        "signals": 0,
    }
    run.update(changes)
    return run


Answer = Callable[[str, dict[str, Any]], dict[str, Any]]


class ScriptedBus:
    """A bus whose asks are answered by ``answer(topic, payload)`` and recorded."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.asked: list[tuple[str, dict[str, Any]]] = []

    async def ask(
        self, topic: str, payload: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Envelope:
        self.asked.append((topic, dict(payload or {})))
        return Envelope(topic, self.answer(topic, dict(payload or {})))


def client_of(bus: ScriptedBus) -> TaskbusClient:
    return TaskbusClient(bus, timeout_s=1.0)  # type: ignore[arg-type]


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Callable[[Answer], ScriptedBus]:
    """Makes the CLI's commands connect to a ScriptedBus instead of a running taskbus."""

    def install(answer: Answer) -> ScriptedBus:
        bus = ScriptedBus(answer)

        class Connected(TaskbusClient):
            @classmethod
            @asynccontextmanager
            async def connect(cls, *args: Any, **kwargs: Any) -> AsyncIterator[TaskbusClient]:
                yield client_of(bus)

        monkeypatch.setattr(_remote, "TaskbusClient", Connected)
        return bus

    return install


def cli(argv: list[str], capsys: pytest.CaptureFixture[str], home: Path) -> tuple[int, str, str]:
    code = main([*argv, "--home", str(home)])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("argv", "func", "fields"),
    [
        (["run", "list"], "list_runs", {"task_id": None, "state": None, "limit": 50}),
        (
            ["run", "list", "--task", "user.x", "--state", "waiting", "--limit", "5", "--json"],
            "list_runs",
            {"task_id": "user.x", "state": "waiting", "limit": 5, "json": True},
        ),
        (
            ["run", "signal", RUN_KEY, "approve", "--payload", '{"by": "ana"}'],
            "signal",
            {"run": RUN_KEY, "name": "approve", "payload": '{"by": "ana"}'},
        ),
        (["run", "signal", EXECUTION_ID, "go"], "signal", {"run": EXECUTION_ID, "payload": None}),
        (["run", "cancel", RUN_KEY], "handler", {"run": RUN_KEY, "reason": ""}),
        (["run", "cancel", RUN_KEY, "--reason", "not needed"], "handler", {"reason": "not needed"}),
        (["run", "pause", RUN_KEY], "handler", {"run": RUN_KEY}),
        (["run", "resume", RUN_KEY, "--json"], "handler", {"run": RUN_KEY, "json": True}),
        (["task", "trigger", "user.x"], "trigger", {"task_id": "user.x", "key": None}),
        (["task", "trigger", "user.x", "--key", "2024-05-01"], "trigger", {"key": "2024-05-01"}),
    ],
)
def test_the_run_commands_parse(argv: list[str], func: str, fields: dict[str, Any]) -> None:
    args = parser.build().parse_args(argv)
    assert args.func.__name__ == func
    for name, value in fields.items():
        assert getattr(args, name) == value, name


def test_the_verbs_run_their_own_handlers() -> None:
    def handler(*argv: str) -> Any:
        return parser.build().parse_args(list(argv)).func

    assert handler("run", "cancel", "r") is runs.cancel
    assert handler("run", "pause", "r") is runs.pause
    assert handler("run", "resume", "r") is runs.resume
    assert handler("task", "trigger", "t") is tasks.trigger


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "list", "--state", "asleep"],
        ["run", "signal", RUN_KEY],  # no name
        ["run", "cancel"],
        ["run", "pause"],
        ["task", "trigger", "user.x", "--key"],
    ],
)
def test_bad_usage_is_argparses_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser.build().parse_args(argv)
    assert exited.value.code == 2


# ------------------------------------------------------------------ formatting


def test_a_runs_row_shows_its_state_wake_and_wait() -> None:
    waiting = a_run(signals=2, reason=None)
    assert runs.run_row(waiting, NOW) == [
        RUN_KEY,
        "waiting",
        "-",
        "approve",
        "2",
        "2",
        "1h 59m ago",
        "-",
    ]
    sleeping = a_run(
        state="sleeping",
        waiting=None,
        paused=True,
        wake_at=(NOW + timedelta(minutes=5)).isoformat(),
        reason="cli",
    )
    assert runs.run_row(sleeping, NOW)[1:4] == ["sleeping+paused", "in 5m", "-"]
    assert runs.run_row(sleeping, NOW)[-1] == "cli"


def test_a_run_is_described_in_words() -> None:
    assert runs.describe(a_run()) == "waiting for approve"
    assert runs.describe(a_run(state="cancelled", waiting=None)) == "cancelled"
    assert runs.describe(a_run(state="running", waiting=None, paused=True)) == "running, paused"
    wake = datetime(2024, 5, 1, 9, 0, tzinfo=UTC).isoformat()
    asleep = runs.describe(a_run(state="sleeping", waiting=None, wake_at=wake))
    assert asleep.startswith("sleeping until 2024-05-0")  # in the local zone


def test_a_payload_is_json_or_a_clear_error() -> None:
    assert runs.read_payload(None) is None
    assert runs.read_payload('{"by": "ana", "n": [1, 2]}') == {"by": "ana", "n": [1, 2]}
    assert runs.read_payload('"yes"') == "yes"
    with pytest.raises(TaskbusError, match="--payload: not JSON"):
        runs.read_payload("yes")
    with pytest.raises(TaskbusError, match="nests too deeply"):
        runs.read_payload("[" * 100_000)


def test_a_started_run_says_whether_the_key_had_started_it() -> None:
    new = Started(task_id="user.x", execution_id=EXECUTION_ID, run=RUN_KEY, duplicate=False)
    assert (
        tasks.started_line(new, "k1")
        == f"triggered user.x: execution {EXECUTION_ID}, run {RUN_KEY}"
    )
    again = Started(task_id="user.x", execution_id=EXECUTION_ID, run=RUN_KEY, duplicate=True)
    assert tasks.started_line(again, "k1") == (
        f"duplicate user.x: key 'k1' already started run {RUN_KEY} "
        f"(execution {EXECUTION_ID}); nothing new started"
    )


# ------------------------------------------------------------------ the client


async def test_the_client_asks_the_run_topics_with_the_spec_payloads() -> None:
    def answer(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        if topic == topics.RUN_SIGNAL:
            return {"run": a_run(signals=1), "seq": 7}
        if topic == topics.TASK_TRIGGER:
            return {
                "task_id": payload["task_id"],
                "execution_id": EXECUTION_ID,
                "run": RUN_KEY,
                "duplicate": "key" in payload,
            }
        return {"run": a_run(state="cancelled")}

    bus = ScriptedBus(answer)
    client = client_of(bus)
    assert await client.signal(RUN_KEY, "approve", {"by": "ana"}) == {
        "run": a_run(signals=1),
        "seq": 7,
    }
    await client.signal(EXECUTION_ID, "go")
    assert (await client.cancel_run(RUN_KEY, "not needed"))["state"] == "cancelled"
    await client.cancel_run(RUN_KEY)
    await client.pause_run(RUN_KEY)
    await client.resume_run(RUN_KEY)
    assert await client.start("user.x", key="k1") == Started(
        task_id="user.x", execution_id=EXECUTION_ID, run=RUN_KEY, duplicate=True
    )
    assert (await client.start("user.x")).duplicate is False
    assert await client.trigger("user.x") == EXECUTION_ID
    assert bus.asked == [
        (topics.RUN_SIGNAL, {"run": RUN_KEY, "name": "approve", "payload": {"by": "ana"}}),
        (topics.RUN_SIGNAL, {"run": EXECUTION_ID, "name": "go"}),
        (topics.RUN_CANCEL, {"run": RUN_KEY, "reason": "not needed"}),
        (topics.RUN_CANCEL, {"run": RUN_KEY}),
        (topics.RUN_PAUSE, {"run": RUN_KEY}),
        (topics.RUN_RESUME, {"run": RUN_KEY}),
        (topics.TASK_TRIGGER, {"task_id": "user.x", "key": "k1"}),
        (topics.TASK_TRIGGER, {"task_id": "user.x"}),
        (topics.TASK_TRIGGER, {"task_id": "user.x"}),
    ]
    assert topics.RUN_SIGNAL == "scheduler.run.signal"
    assert topics.RUN_LIST == "scheduler.run.list"


async def test_runs_reads_every_page_or_up_to_the_limit() -> None:
    keys = [f"user.x@{n}" for n in range(250)]

    def answer(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        start = keys.index(payload["after"]) + 1 if payload["after"] else 0
        page = keys[start : start + payload["limit"]]
        more = start + len(page) < len(keys)
        return {
            "runs": [a_run(run_key=key) for key in page],
            "next_cursor": page[-1] if more else None,
        }

    bus = ScriptedBus(answer)
    client = client_of(bus)
    every = await client.runs("user.x", "waiting")
    assert [run["run_key"] for run in every] == keys
    assert bus.asked[0] == (
        topics.RUN_LIST,
        {"after": None, "limit": 100, "task_id": "user.x", "state": "waiting"},
    )
    assert len(bus.asked) == 3
    bus.asked.clear()
    assert [run["run_key"] for run in await client.runs(limit=5)] == keys[:5]
    assert bus.asked == [(topics.RUN_LIST, {"after": None, "limit": 5})]


# ------------------------------------------------------------------ the commands


def test_run_list_prints_a_table_json_or_none(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    found: list[dict[str, Any]] = [a_run(), a_run(run_key="user.approval@1", state="cancelled")]
    bus = scripted(lambda topic, payload: {"runs": found, "next_cursor": None})
    code, out, _ = cli(["run", "list", "--task", "user.approval"], capsys, tmp_path)
    assert code == 0
    header, first, second = out.splitlines()
    assert header.split() == [
        "RUN",
        "STATE",
        "WAKE",
        "WAITING",
        "ATTEMPT",
        "SIGNALS",
        "UPDATED",
        "REASON",
    ]
    assert first.split()[:4] == [RUN_KEY, "waiting", "-", "approve"]
    assert second.split()[:2] == ["user.approval@1", "cancelled"]
    assert bus.asked == [
        (topics.RUN_LIST, {"after": None, "limit": 50, "task_id": "user.approval"})
    ]

    code, out, _ = cli(["run", "list", "--json"], capsys, tmp_path)
    assert (code, json.loads(out)) == (0, found)

    found.clear()
    code, out, _ = cli(["run", "list", "--state", "waiting", "--task", "user.a"], capsys, tmp_path)
    assert (code, out) == (0, "no runs of user.a in state waiting\n")


def test_run_signal_sends_the_json_payload_and_says_what_the_run_does(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bus = scripted(lambda topic, payload: {"run": a_run(state="running", waiting=None), "seq": 3})
    argv = ["run", "signal", EXECUTION_ID, "approve", "--payload", '{"by": "ana"}']
    code, out, _ = cli(argv, capsys, tmp_path)
    assert (code, out) == (0, f"sent approve to {RUN_KEY} as signal 3: running\n")
    assert bus.asked == [
        (topics.RUN_SIGNAL, {"run": EXECUTION_ID, "name": "approve", "payload": {"by": "ana"}})
    ]
    code, out, _ = cli([*argv, "--json"], capsys, tmp_path)
    assert code == 0
    assert json.loads(out)["seq"] == 3


def test_a_payload_that_is_not_json_is_one_line_and_exit_1_without_connecting(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bus = scripted(lambda topic, payload: {})
    code, out, err = cli(["run", "signal", RUN_KEY, "go", "--payload", "{nope"], capsys, tmp_path)
    assert (code, out) == (exits.EXIT_ERROR, "")
    [line] = err.splitlines()
    assert line.startswith("taskbus: --payload: not JSON")
    assert bus.asked == []


@pytest.mark.parametrize(
    ("argv", "topic", "payload", "printed"),
    [
        (
            ["run", "cancel", RUN_KEY, "--reason", "not needed"],
            topics.RUN_CANCEL,
            {"run": RUN_KEY, "reason": "not needed"},
            f"cancelled {RUN_KEY}: cancelled\n",
        ),
        (["run", "pause", RUN_KEY], topics.RUN_PAUSE, {"run": RUN_KEY}, f"paused {RUN_KEY}: "),
        (["run", "resume", RUN_KEY], topics.RUN_RESUME, {"run": RUN_KEY}, f"resumed {RUN_KEY}: "),
    ],
)
def test_the_controls_ask_and_print_one_line(
    scripted: Callable[[Answer], ScriptedBus],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    *,
    argv: list[str],
    topic: str,
    payload: dict[str, Any],
    printed: str,
) -> None:
    after = {
        topics.RUN_CANCEL: a_run(state="cancelled", waiting=None, reason="not needed"),
        topics.RUN_PAUSE: a_run(paused=True),
        topics.RUN_RESUME: a_run(state="running", waiting=None),
    }
    bus = scripted(lambda asked, _: {"run": after[asked]})
    code, out, _ = cli(argv, capsys, tmp_path)
    assert code == 0
    assert out.startswith(printed)
    assert out.count("\n") == 1
    assert bus.asked == [(topic, payload)]


def test_a_refusal_is_one_line_with_the_topic_and_exit_1(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def refuse(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise RemoteError("conflict", f"run {RUN_KEY} is succeeded")

    scripted(refuse)
    code, out, err = cli(["run", "signal", RUN_KEY, "approve"], capsys, tmp_path)
    assert (code, out) == (exits.EXIT_ERROR, "")
    assert err == f"taskbus: scheduler.run.signal: conflict: run {RUN_KEY} is succeeded\n"


def test_trigger_with_a_key_prints_the_run_and_whether_it_was_a_duplicate(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    seen: set[str] = set()

    def answer(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        duplicate = payload.get("key") in seen
        seen.add(payload.get("key", ""))
        return {
            "task_id": payload["task_id"],
            "execution_id": EXECUTION_ID,
            "run": RUN_KEY,
            "duplicate": duplicate,
        }

    bus = scripted(answer)
    argv = ["task", "trigger", "user.approval", "--key", "k1"]
    code, out, _ = cli(argv, capsys, tmp_path)
    assert (code, out) == (0, f"triggered user.approval: execution {EXECUTION_ID}, run {RUN_KEY}\n")
    code, out, _ = cli(argv, capsys, tmp_path)
    assert code == 0
    assert out.startswith(f"duplicate user.approval: key 'k1' already started run {RUN_KEY} ")
    code, out, _ = cli(["task", "trigger", "user.approval"], capsys, tmp_path)
    assert (code, out) == (0, f"triggered user.approval: execution {EXECUTION_ID}\n")
    assert [payload for _, payload in bus.asked] == [
        {"task_id": "user.approval", "key": "k1"},
        {"task_id": "user.approval", "key": "k1"},
        {"task_id": "user.approval"},
    ]


def test_an_attempts_state_says_suspended_and_cancelled() -> None:
    def execution(success: bool | None, result: Any = None) -> dict[str, Any]:
        return {"success": success, "result": result}

    assert fmt.run_state(execution(None)) == "running"
    assert fmt.run_state(execution(True, {"n": 1})) == "succeeded"
    assert fmt.run_state(execution(True)) == "succeeded"
    suspended = {"suspended": {"wake_at": None, "waiting": "approve", "paused": False}}
    assert fmt.run_state(execution(True, suspended)) == "suspended"
    assert fmt.run_state(execution(False, {"error_type": ["ValueError", "Exception"]})) == "failed"
    cancelled = {"error_type": ["RunCancelled", "TaskCancelled", "TaskbusError"]}
    assert fmt.run_state(execution(False, cancelled)) == "cancelled"
    assert fmt.run_state(execution(False)) == "failed"
