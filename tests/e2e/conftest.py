"""The end-to-end tests' one fixture: no child process outlives its test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.system import CHILDREN


@pytest.fixture(autouse=True)
def _no_child_left_behind() -> Iterator[None]:
    yield
    while CHILDREN:
        child = CHILDREN.pop()
        if child.process.poll() is None:
            child.process.kill()
        child.wait()
        if child.process.stderr is not None:
            child.process.stderr.close()
        print(child.output())  # shown by pytest when the test failed
