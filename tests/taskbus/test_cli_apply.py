"""``taskbus task apply -f FILE``, in-process: the TOML file read into create payloads (and every
way it can be wrong, each one line naming the table), the plan asked as a dry run and printed
first, then applied; ``--dry-run`` stops at the plan; a refused item is named by its table; the
client's typed records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bus import RemoteError
from config import topics
from taskbus.batches import ApplyPlan, Created, ItemError, batches
from taskbus.cli import apply, exits, parser
from tests.taskbus.test_cli_child_runs import scripted  # noqa: F401 - the fixture
from tests.taskbus.test_cli_runs import Answer, ScriptedBus, cli, client_of

FILE = """\
[[task]]
task_id = "user.reflect"
task_class = "tasks.reminders:Reminder"
schedule = "0 23 * * *"
timezone = "Europe/Berlin"
config = { message = "time to reflect" }

[[task]]
task_id = "user.digest"
task_class = "tasks.reminders:Reminder"
schedule = "every 1h"
enabled = false
[task.retry_policy]
max_attempts = 3
"""

DEFINITIONS = [
    {
        "task_id": "user.reflect",
        "task_class": "tasks.reminders:Reminder",
        "schedule": "0 23 * * *",
        "timezone": "Europe/Berlin",
        "config": {"message": "time to reflect"},
    },
    {
        "task_id": "user.digest",
        "task_class": "tasks.reminders:Reminder",
        "schedule": "every 1h",
        "enabled": False,
        "retry_policy": {"max_attempts": 3},
    },
]

PLAN = [
    {"task_id": "user.reflect", "action": "create"},
    {"task_id": "user.digest", "action": "update", "changes": ["enabled", "retry_policy"]},
    {"task_id": "user.old", "action": "delete"},
]


def written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tasks.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_file_becomes_create_payloads(tmp_path: Path) -> None:
    assert apply.read_file(written(tmp_path, FILE)) == DEFINITIONS
    assert apply.read_file(written(tmp_path, "")) == []  # no task: with --prune, delete all


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[task]\n", "tasks.toml: not TOML:"),
        ('title = "x"\n', "tasks.toml: unknown key 'title': the file holds [[task]] tables only"),
        ('task = "x"\n', "'task' must be [[task]] tables"),
        (
            '[[task]]\ntask_id = "user.a"\nclas = "a:B"\nschedule = "@daily"\n',
            "[[task]] 1 (user.a): unknown key 'clas'; expected task_id, task_class",
        ),
        (
            '[[task]]\ntask_id = "user.a"\ntask_class = "a:B"\nschedule = "@daily"\n'
            '[[task]]\ntask_id = "user.b"\nschedule = "@daily"\n',
            "[[task]] 2 (user.b): 'task_class' is required",
        ),
        (
            '[[task]]\ntask_id = "user.a"\ntask_class = "a:B"\nschedule = "@daily"\nconfig = "x"\n',
            "[[task]] 1 (user.a): 'config' must be a table",
        ),
        (
            '[[task]]\ntask_id = "user.a"\ntask_class = "a:B"\nschedule = "@daily"\n'
            "config = { at = 2024-05-01T10:00:00Z }\n",
            "[[task]] 1 (user.a): config.at: a TOML date or time; quote it",
        ),
    ],
    ids=["not toml", "other key", "not tables", "unknown key", "missing", "not a map", "a date"],
)
def test_a_bad_file_is_one_line_naming_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str
) -> None:
    path = written(tmp_path, text)
    with pytest.raises(apply.BadFile) as refused:
        apply.read_file(path)
    assert message in str(refused.value)
    code, out, err = cli(["task", "apply", "-f", str(path)], capsys, tmp_path)
    assert (code, out) == (exits.EXIT_ERROR, "")
    [line] = err.splitlines()
    assert line.startswith("taskbus: ")
    assert message in line


def test_a_missing_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["task", "apply", "-f", str(tmp_path / "none.toml")], capsys, tmp_path)
    assert code == exits.EXIT_ERROR
    assert "none.toml: cannot be read" in err


def test_apply_parses() -> None:
    args = parser.build().parse_args(["task", "apply", "-f", "t.toml", "--prune", "--dry-run"])
    assert (args.func, args.file, args.prune, args.dry_run) == (
        apply.apply,
        Path("t.toml"),
        True,
        True,
    )
    with pytest.raises(SystemExit):
        parser.build().parse_args(["task", "apply"])


def planner(failing: str | None = None) -> Answer:
    """The scheduler's answers: the plan; applied, each entry's result (``failing`` refused)."""

    def answer(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        assert topic == topics.TASK_APPLY
        plan = [dict(entry) for entry in PLAN]
        if not payload["dry_run"]:
            for entry in plan:
                entry["ok"] = entry["task_id"] != failing
                if entry["ok"] and entry["action"] != "delete":
                    entry["task"] = {"task_id": entry["task_id"], "version": 2}
                elif not entry["ok"]:
                    entry["error"] = {"code": "exists", "reason": "task exists"}
        reply: dict[str, Any] = {
            "plan": plan,
            "dry_run": payload["dry_run"],
            "counts": {"create": 1, "update": 1, "delete": 1, "unchanged": 0},
        }
        if not payload["dry_run"]:
            reply["failed"] = sum(not entry["ok"] for entry in plan)
        return reply

    return answer


def test_apply_prints_the_plan_then_applies_it(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    bus = scripted(planner())
    path = written(tmp_path, FILE)
    code, out, err = cli(["task", "apply", "-f", str(path), "--prune"], capsys, tmp_path)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "plan: 1 to create, 1 to update, 1 to delete, 0 unchanged"
    assert lines[2].split() == ["+", "user.reflect", "create"]
    assert lines[3].split() == ["~", "user.digest", "update", "(enabled,", "retry_policy)"]
    assert lines[4].split() == ["-", "user.old", "delete"]
    assert lines[5:] == [
        "created user.reflect",
        "updated user.digest to version 2",
        "deleted user.old",
        "applied 3 of 3 changes, 0 failed",
    ]
    sent = {"tasks": DEFINITIONS, "prune": True}
    assert bus.asked == [
        (topics.TASK_APPLY, {**sent, "dry_run": True}),
        (topics.TASK_APPLY, {**sent, "dry_run": False}),
    ]


def test_dry_run_asks_for_the_plan_only(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    bus = scripted(planner())
    path = written(tmp_path, FILE)
    code, out, _ = cli(["task", "apply", "-f", str(path), "--dry-run"], capsys, tmp_path)
    assert code == 0
    assert out.splitlines()[0].endswith("(without --prune: tasks not in the file are kept)")
    assert [payload["dry_run"] for _, payload in bus.asked] == [True]
    code, out, _ = cli(["task", "apply", "-f", str(path), "--dry-run", "--json"], capsys, tmp_path)
    shown = json.loads(out)
    assert (code, shown["dry_run"], [e["action"] for e in shown["plan"]]) == (
        0,
        True,
        ["create", "update", "delete"],
    )


def test_a_failed_entry_is_a_line_on_stderr_and_exit_1(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    scripted(planner(failing="user.reflect"))
    path = written(tmp_path, FILE)
    code, out, err = cli(["task", "apply", "-f", str(path)], capsys, tmp_path)
    assert code == 1
    assert err == "taskbus: create user.reflect failed: exists: task exists\n"
    assert out.splitlines()[-1] == "applied 2 of 3 changes, 1 failed"


def test_a_refused_item_is_named_by_its_table(
    scripted: Callable[[Answer], ScriptedBus],  # noqa: F811 - the fixture
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    def refuse(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        raise RemoteError("invalid", "tasks[1].schedule: 'every 1h' is not a schedule")

    scripted(refuse)
    path = written(tmp_path, FILE)
    code, out, err = cli(["task", "apply", "-f", str(path)], capsys, tmp_path)
    assert (code, out) == (exits.EXIT_ERROR, "")
    assert err == (
        f"taskbus: {path}: [[task]] 2 (user.digest): schedule: 'every 1h' is not a schedule\n"
    )


async def test_the_client_returns_typed_records() -> None:
    def answer(topic: str, payload: dict[str, Any]) -> dict[str, Any]:
        if topic == topics.TASK_APPLY:
            return planner()(topic, payload)
        assert topic == topics.TASK_CREATE_MANY
        return {
            "results": [
                {"task_id": t["task_id"], "ok": True, "task": {"task_id": t["task_id"]}}
                if t["task_id"] != "user.bad"
                else {
                    "task_id": "user.bad",
                    "ok": False,
                    "error": {"code": "invalid", "reason": "schedule: no"},
                }
                for t in payload["tasks"]
            ]
        }

    bus = ScriptedBus(answer)
    client = client_of(bus)
    tasks = [{"task_id": f"user.t{i}", "task_class": "a:B", "schedule": "@daily"} for i in range(5)]
    tasks[3]["task_id"] = "user.bad"
    created = await client.create_many(tasks, batch=2)
    assert [len(payload["tasks"]) for _, payload in bus.asked] == [2, 2, 1]  # in batches
    assert [c.task_id for c in created] == [t["task_id"] for t in tasks]  # in order
    assert created[3] == Created(
        task_id="user.bad", ok=False, error=ItemError("invalid", "schedule: no")
    )
    assert created[0].task == {"task_id": "user.t0"}
    with pytest.raises(ValueError, match="batch 1001"):
        await client.create_many(tasks, batch=1_001)

    plan = await client.apply(tasks, prune=True, dry_run=True)
    assert isinstance(plan, ApplyPlan)
    assert (plan.dry_run, plan.changes, plan.entries[1].changes) == (
        True,
        3,
        ("enabled", "retry_policy"),
    )
    assert plan.entries[0].ok is None  # not applied


def test_batches_split_by_count_and_by_size() -> None:
    small = [{"task_id": f"user.s{i}"} for i in range(5)]
    assert [len(b) for b in batches(small, count=2, max_bytes=10_000)] == [2, 2, 1]
    big = [{"task_id": f"user.b{i}", "config": {"blob": "x" * 400}} for i in range(5)]
    split = batches(big, count=1_000, max_bytes=1_000)  # two of ~430 bytes fit
    assert [len(b) for b in split] == [2, 2, 1]
    assert [item for b in split for item in b] == big  # in order
    huge = [{"config": {"blob": "x" * 5_000}}]
    assert batches(huge, count=10, max_bytes=1_000) == [huge]  # alone, the bus judges it
