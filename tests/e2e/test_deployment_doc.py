"""docs/deployment.md's embedded example, run verbatim."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_embedded_example_runs_as_documented() -> None:
    doc = (ROOT / "docs" / "deployment.md").read_text()
    snippet = next(s for s in re.findall(r"```python\n(.*?)```", doc, re.S) if "asyncio.run" in s)
    result = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "hello AICO from greeter",
        "healthy",
        "clean shutdown",
    ]
