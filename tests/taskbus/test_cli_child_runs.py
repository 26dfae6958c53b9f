"""``run tree`` and ``run query`` and their client methods (``TaskbusClient.run_tree``,
``query``), in-process: each command parsed, run against a client whose bus answers as the
scheduler would, its asks and output checked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bus import RemoteError
from config import topics
from taskbus.cli import _remote, exits, parser
from taskbus.cli import run as runs
from taskbus.client import TaskbusClient
from tests.taskbus.test_cli_runs import RUN_KEY, Answer, ScriptedBus, a_run, cli, client_of

CHILD_A = "user.child_0123456789abcdef@1714546800100000"
CHILD_B = "agency.child_fedcba9876543210@1714546800200000"
GRANDCHILD = "user.child_00000000000000aa@1714546800300000"


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


def a_tree() -> dict[str, Any]:
    """A parent with two children, the first with a child of its own."""
    return {
        "run": a_run(state="waiting", waiting="child:a"),
        "children": [
            {
                "run": a_run(
                    run_key=CHILD_A,
                    task_id="user.child_0123456789abcdef",
                    state="sleeping",
                    waiting=None,
                    parent_key=RUN_KEY,
                    spawn_key="a",
                ),
                "children": [
                    {
                        "run": a_run(
                            run_key=GRANDCHILD,
                            task_id="user.child_00000000000000aa",
                            state="succeeded",
                            waiting=None,
                            parent_key=CHILD_A,
                            spawn_key="inner",
                        ),
                        "children": [],
                    }
                ],
            },
            {
                "run": a_run(
                    run_key=CHILD_B,
                    task_id="agency.child_fedcba9876543210",
                    state="failed",
                    waiting=None,
                    paused=True,
                    parent_key=RUN_KEY,
                    spawn_key="b",
                    on_parent_cancel="abandon",
                ),
                "children": [],
            },
        ],
    }


def test_tree_and_query_parse() -> None:
    build = parser.build()
    args = build.parse_args(["run", "tree", RUN_KEY])
    assert (args.func, args.run, args.json) == (runs.tree, RUN_KEY, False)
    args = build.parse_args(["run", "query", RUN_KEY, "progress", "--json"])
    assert (args.func, args.run, args.name, args.json) == (runs.query, RUN_KEY, "progress", True)
    for argv in (["run", "tree"], ["run", "query", RUN_KEY]):
        with pytest.raises(SystemExit) as exited:
            build.parse_args(argv)
        assert exited.value.code == 2


def test_a_tree_is_one_indented_line_per_run() -> None:
    assert runs.tree_lines(a_tree()) == [
        f"{RUN_KEY}  user.approval  waiting",
        f"  {CHILD_A}  user.child_0123456789abcdef  sleeping  (spawned as a)",
        f"    {GRANDCHILD}  user.child_00000000000000aa  succeeded  (spawned as inner)",
        f"  {CHILD_B}  agency.child_fedcba9876543210  failed+paused  (spawned as b)"
        ", on parent cancel: abandon",
    ]
    assert runs.tree_lines({"run": RUN_KEY, "children": []}) == [RUN_KEY]  # a bare key


async def test_the_client_asks_tree_and_query() -> None:
    def answer(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        if topic == topics.RUN_TREE:
            return a_tree()
        return {"answer": {"done": 3, "of": 5}, "live": True}

    bus = ScriptedBus(answer)
    client = client_of(bus)
    assert await client.run_tree(RUN_KEY) == a_tree()
    assert await client.query(RUN_KEY, "progress") == {"answer": {"done": 3, "of": 5}, "live": True}
    assert bus.asked == [
        (topics.RUN_TREE, {"run": RUN_KEY}),
        (topics.RUN_QUERY, {"run": RUN_KEY, "name": "progress"}),
    ]
    assert topics.RUN_TREE == "scheduler.run.tree"
    assert topics.RUN_QUERY == "scheduler.run.query"


def test_run_tree_prints_the_tree_or_json(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bus = scripted(lambda topic, payload: a_tree())
    code, out, _ = cli(["run", "tree", RUN_KEY], capsys, tmp_path)
    assert (code, out) == (0, "\n".join(runs.tree_lines(a_tree())) + "\n")
    code, out, _ = cli(["run", "tree", RUN_KEY, "--json"], capsys, tmp_path)
    assert (code, json.loads(out)) == (0, a_tree())
    assert bus.asked == [(topics.RUN_TREE, {"run": RUN_KEY})] * 2


def test_run_query_prints_the_answer_and_where_it_came_from(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    answers: list[dict[str, Any]] = [
        {"answer": {"done": 3}, "live": True},
        {"answer": [1, 2], "live": False},
        {"answer": None, "live": False},
    ]
    replies = iter(answers)
    bus = scripted(lambda topic, payload: next(replies))
    code, out, _ = cli(["run", "query", RUN_KEY, "progress"], capsys, tmp_path)
    assert (code, out) == (0, f'progress of {RUN_KEY}, live:\n{{\n  "done": 3\n}}\n')
    code, out, _ = cli(["run", "query", RUN_KEY, "progress"], capsys, tmp_path)
    assert code == 0
    assert out.startswith(f"progress of {RUN_KEY}, stored (the run is not live):\n")
    code, out, _ = cli(["run", "query", RUN_KEY, "progress", "--json"], capsys, tmp_path)
    assert (code, json.loads(out)) == (0, {"answer": None, "live": False})
    assert bus.asked == [(topics.RUN_QUERY, {"run": RUN_KEY, "name": "progress"})] * 3


def test_a_query_without_an_answer_is_one_line_and_exit_1(
    scripted: Callable[[Answer], ScriptedBus], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reason = f"run {RUN_KEY} has no stored answer to query 'progress'"

    def refuse(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise RemoteError("not_found", reason)

    scripted(refuse)
    code, out, err = cli(["run", "query", RUN_KEY, "progress"], capsys, tmp_path)
    assert (code, out) == (exits.EXIT_ERROR, "")
    assert err == f"taskbus: scheduler.run.query: not_found: {reason}\n"


def test_every_run_topic_is_a_row_of_the_protocol() -> None:
    """Each ``scheduler.run.*``, ``scheduler.exec.*`` and ``store.run.*`` topic has its row in
    docs/protocol.md (a family prefix is mentioned in the text)."""
    protocol = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    families = ("scheduler.run.", "scheduler.exec.", "store.run.")
    run_topics = {
        value
        for value in vars(topics).values()
        if isinstance(value, str) and value.startswith(families) and not value.endswith(".")
    }
    assert {topics.RUN_TREE, topics.RUN_QUERY, topics.EXEC_SPAWN} <= run_topics  # not vacuous
    missing = sorted(
        topic
        for topic in run_topics
        if f"| `{topic}` |" not in protocol and f"| `{topic}<" not in protocol
    )
    assert missing == [], missing
