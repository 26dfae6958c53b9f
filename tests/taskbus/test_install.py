"""Installing taskbus is quiet but not silent: the licence is metadata the pinned setuptools
takes without a deprecation warning, and scripts/_venv.sh says what it does before the slow
first install (and nothing once installed)."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_licence_is_an_spdx_expression_for_a_setuptools_that_reads_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"  # a table is deprecated since setuptools 77
    assert "setuptools>=77" in project["build-system"]["requires"]


def _source_venv(venv: Path, python: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", f'source "{ROOT}/scripts/_venv.sh"'],
        env={**os.environ, "TASKBUS_VENV": str(venv), "PYTHON": str(python)},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_the_first_install_is_announced_and_later_runs_are_silent(tmp_path: Path) -> None:
    # A stand-in interpreter: `-m venv DIR` makes DIR/bin/python, itself a stand-in whose pip
    # installs nothing; what is printed around them is the script's own.
    calls = tmp_path / "calls"
    python = tmp_path / "python3"
    python.write_text(
        "#!/usr/bin/env bash\n"
        f'echo "$@" >> "{calls}"\n'
        'if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; fi\n'
    )
    python.chmod(0o755)
    venv = tmp_path / "venv"

    first = _source_venv(venv, python)
    assert first.returncode == 0, first.stderr
    assert first.stderr.startswith(
        f"first run: creating {venv} and installing taskbus into it (about a minute)...\n"
    )
    assert "pip install --quiet -e" in calls.read_text()
    assert first.stdout == ""

    again = _source_venv(venv, python)
    assert again.returncode == 0, again.stderr
    assert (again.stdout, again.stderr) == ("", "")  # installed: nothing to say
