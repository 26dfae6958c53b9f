"""The store actor's tests: a real store actor on a real bus over the store tests' real encrypted
files, and the typed client that asks it."""

import pytest

from actors.storing.client import StoreClient
from tests.store.conftest import data_dir, db_path
from tests.storing.test_actor import Served, served, system

__all__ = ["data_dir", "db_path", "served", "store", "system"]


@pytest.fixture
def store(served: Served) -> StoreClient:
    async def ask(topic: str, payload: object, timeout: float | None) -> object:
        return await served.client.ask(topic, payload, timeout=timeout)  # type: ignore[arg-type]

    return StoreClient(ask)  # type: ignore[arg-type]
