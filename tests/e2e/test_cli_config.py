"""The command line loads the layered configuration and refuses to start on a bad value."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _taskbus(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskbus", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_environment_value_stops_up_with_one_line(tmp_path: Path) -> None:
    result = _taskbus(
        "--home",
        str(tmp_path),
        "up",
        env={"TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS": "abc"},
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "taskbus: config scheduler.max_concurrent_tasks='abc': expected an integer from 1 to "
        "10000 (from TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS)"
    ]
    assert not (tmp_path / "keys").exists()  # refused before touching anything


def test_a_config_file_with_an_unknown_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "taskbus.toml"
    config.write_text("[scheduler]\nmax_concurent_tasks = 4\n")
    result = _taskbus("--config", str(config), "--home", str(tmp_path), "keys", "list", env={})
    assert result.returncode == 1
    assert "scheduler.max_concurent_tasks" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_config_file_sets_the_data_directory(tmp_path: Path) -> None:
    home = tmp_path / "elsewhere"
    config = tmp_path / "taskbus.toml"
    config.write_text(f'[paths]\ndata_dir = "{home}"\n')
    result = _taskbus("--config", str(config), "keys", "init", env={"TASKBUS_HOME": ""})
    assert result.returncode == 0, result.stderr
    assert (home / "keys" / "server" / "broker.key_secret").stat().st_mode & 0o777 == 0o600
