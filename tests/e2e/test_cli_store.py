"""``taskbus store check`` and ``taskbus store rekey`` against a live system, and their errors."""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.procs import free_port, running_up, taskbus


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "TASKBUS_HOME": str(tmp_path / "home"),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
    }


def test_check_and_rekey_a_running_store(tmp_path: Path) -> None:
    env = _env(tmp_path)
    home = tmp_path / "home"
    with running_up(env):
        checked = taskbus(env, "store", "check")
        assert (checked.returncode, checked.stdout) == (0, "store integrity: ok\n"), checked.stderr
        old_key = (home / "master.key").read_bytes()
        rekeyed = taskbus(env, "store", "rekey")
        assert rekeyed.returncode == 0, rekeyed.stderr
        backup = Path(rekeyed.stdout.split("backup with the old key: ")[1].splitlines()[0])
        assert backup.exists()
        assert backup.parent == home
        assert (home / "master.key").read_bytes() != old_key
        again = taskbus(env, "store", "check")
        assert (again.returncode, again.stdout) == (0, "store integrity: ok\n"), again.stderr


def test_without_a_running_system_the_error_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    with running_up(env):
        pass  # keys and database created; the system is stopped again
    result = taskbus(env, "store", "check", "--timeout", "1")
    assert result.returncode == 5
    [line] = result.stderr.splitlines()
    assert line.startswith(f"taskbus: no taskbus answers at {env['TASKBUS_ENDPOINT']}"), line
