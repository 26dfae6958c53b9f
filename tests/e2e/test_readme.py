"""The README's commands, run as a newcomer would: `taskbus up`, then the tour snippet."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from tests.e2e.procs import free_port, wait_for_line

ROOT = Path(__file__).resolve().parents[2]


def _tour_snippet() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"```python\n(.*?)```", readme, re.S)
    assert match, "README has no python snippet"
    return match.group(1)


def test_up_then_readme_tour(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TASKBUS_HOME": str(tmp_path / "home"),
        "TASKBUS_ENDPOINT": f"tcp://127.0.0.1:{free_port()}",
    }
    up = subprocess.Popen(
        [sys.executable, "-m", "actors.cli", "up"],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = wait_for_line(up, "broker listening on", 30)
        assert any("created CurveZMQ keys" in line for line in lines)
        secret = tmp_path / "home" / "keys" / "identities" / "cli.key_secret"
        assert secret.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "home" / "keys").stat().st_mode & 0o777 == 0o700
        store_line = next(line for line in lines if "encrypted store at" in line)
        assert "(running)" in store_line
        assert (tmp_path / "home" / "master.key").stat().st_mode & 0o777 == 0o600
        tour = subprocess.run(
            [sys.executable, "-c", _tour_snippet()],
            env=env,
            cwd=ROOT,
            capture_output=True,
            check=False,
            text=True,
            timeout=60,
        )
        assert tour.returncode == 0, tour.stderr
        assert "cli demo.hello {'text': 'hi'}" in tour.stdout
        assert "peer(s) connected" in tour.stdout
    finally:
        up.send_signal(signal.SIGTERM)
        remaining = up.communicate(timeout=30)[1]
    assert up.returncode == 0, remaining
    assert "bus.broker stopped" in remaining
