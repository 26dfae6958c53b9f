"""A real process pool for the tests of work sent off the event loop."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest


@pytest.fixture
def process_pool() -> Iterator[ProcessPoolExecutor]:
    """One worker, started with spawn: no fork of a process that has threads."""
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


from tests.tasks.rig import start  # noqa: E402, F401 - the executor tests' system, a fixture
