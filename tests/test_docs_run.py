"""Every ```python block in the README and docs/ runs as printed, twice in a row (what it
creates must not trip its second run), from the project directory in a fresh data directory.

A block that is a fragment (an excerpt, an outline) says so on the line before its fence:
``<!-- not run: <reason> -->``; there are few, each with its reason. A block that needs a running
taskbus says ``<!-- run: against a running taskbus -->`` and gets one (``taskbus up``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.procs import free_port, running_up

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!-- not run: (?P<reason>\S.*\S) -->")
AGAINST_UP = "<!-- run: against a running taskbus -->"
MOST_FRAGMENTS = 6  # a fragment is the exception: make a block runnable rather than raise this

pytestmark = pytest.mark.timeout(180)


@dataclass(frozen=True)
class Block:
    where: str  # README.md:115, the line of the opening fence
    code: str
    marker: str  # the line before the fence

    @property
    def not_run(self) -> str | None:
        found = NOT_RUN.fullmatch(self.marker.strip())
        return found["reason"] if found else None


def blocks() -> list[Block]:
    found = []
    for document in DOCUMENTS:
        lines = document.read_text().splitlines()
        index = 0
        while index < len(lines):
            if lines[index].strip() == "```python":
                end = lines.index("```", index + 1)
                found.append(
                    Block(
                        where=f"{document.relative_to(ROOT)}:{index + 1}",
                        code="\n".join(lines[index + 1 : end]) + "\n",
                        marker=lines[index - 1] if index else "",
                    )
                )
                index = end
            index += 1
    return found


RUNNABLE = [block for block in blocks() if block.not_run is None]


def _env(home: Path, endpoint: str | None = None) -> dict[str, str]:
    return {
        **os.environ,
        "TASKBUS_HOME": str(home),
        "TASKBUS_ENDPOINT": endpoint or f"tcp://127.0.0.1:{free_port()}",
        "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "100",  # the suite loads both cores
    }


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment of a running ``taskbus up``, for the blocks that need one."""
    env = _env(tmp_path_factory.mktemp("docs-up") / "home")
    with running_up(env):
        yield env


def test_the_blocks_are_found_and_fragments_are_few_and_explained() -> None:
    every = blocks()
    assert any(block.where.startswith("README.md") for block in RUNNABLE)  # not vacuous
    assert any(block.where.startswith("docs/tasks.md") for block in RUNNABLE)
    fragments = [block for block in every if block.not_run is not None]
    assert len(fragments) <= MOST_FRAGMENTS, [block.where for block in fragments]
    for block in every:
        assert "not run" not in block.marker or block.not_run, f"{block.where}: no reason"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda block: block.where)
def test_the_block_runs_as_printed_twice(
    block: Block, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if block.marker.strip() == AGAINST_UP:
        env: dict[str, str] = request.getfixturevalue("running")
    else:
        env = _env(tmp_path / "home")
    for run in ("first", "second"):
        result = subprocess.run(
            [sys.executable, "-c", block.code],
            env=env,
            cwd=ROOT,  # as a reader runs it: from the project directory
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, f"{block.where}, {run} run:\n{result.stderr}"
        assert "Traceback" not in result.stderr, result.stderr
