"""docs/tasks.md's "Your first task", followed as printed: the module saved where it says, taskbus
started with the two variables it exports, the task created, triggered and its run seen."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.procs import ROOT, free_port, taskbus, until_ran, wait_for_line

pytestmark = pytest.mark.timeout(120)


def _section() -> str:
    text = (ROOT / "docs" / "tasks.md").read_text()
    start = text.index("## Your first task")
    return text[start : text.index("\n## ", start + 1)]


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", _section(), re.S)


def test_your_first_task_as_printed(tmp_path: Path) -> None:
    section = _section()
    [module] = _blocks("python")
    where = re.search(r"say `~/([\w-]+)/(\w+)\.py`", section)
    assert where, "the section says where the module goes"
    directory, name = where.groups()
    home = tmp_path / "user"  # the reader's home directory: ~ in the printed commands
    (home / directory).mkdir(parents=True)
    (home / directory / f"{name}.py").write_text(module)

    start, commands = _blocks("sh")
    assert start.splitlines()[-1] == "scripts/up"
    # scripts/up is `taskbus up` in the project's .venv (which this test runs in).
    script = start.replace("scripts/up", f"exec {Path(sys.executable).parent / 'taskbus'} up")
    env = {
        **os.environ,
        "HOME": str(home),
        "TASKBUS_HOME": str(tmp_path / "data"),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",  # the suite loads both cores
    }
    env.pop("PYTHONPATH", None)
    env.pop("TASKBUS_SCHEDULER__TASK_MODULES", None)
    up = subprocess.Popen(
        ["bash", "-c", script],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(up, "actors running:", 30)
        lines = commands.splitlines()
        assert lines[0] == ". .venv/bin/activate"
        outputs = []
        for line in lines[1:]:
            command = shlex.split(line)[1:]
            if command[:2] == ["task", "logs"]:
                until_ran(env, command[2])
            result = taskbus(env, *command)
            assert result.returncode == 0, (line, result.stderr)
            outputs.append(result.stdout)
        assert outputs[0].startswith("created user.count")
        assert " succeeded " in outputs[-1], outputs[-1]
        assert '"counted": 5' in outputs[-1], outputs[-1]  # the result the section promises
        runs = json.loads(taskbus(env, "task", "logs", "user.count", "--json").stdout)
        assert {"counted": 5} in [run["result"] for run in runs if run["success"]], runs
    finally:
        up.send_signal(signal.SIGTERM)
        remaining = up.communicate(timeout=30)[1]
    assert up.returncode == 0, remaining
