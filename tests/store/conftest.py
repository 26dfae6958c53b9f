"""Fixtures of the store tests: real encrypted files in ``tmp_path``, stores closed at teardown.

Every store gets an empty ``environ``, so a ``TASKBUS_MASTER_KEY`` in the developer's shell never
leaks in; the key is the file ``master.key`` beside the database unless a test says otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import libsql
import pytest

from store import LibsqlStore, MasterKey

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
StoreFactory = Callable[..., Awaitable[LibsqlStore]]


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``: the tests' instants, all in UTC."""
    return T0 + timedelta(seconds=seconds)


def file_hashes(directory: Path) -> dict[str, str]:
    """SHA-256 of every file in ``directory`` (lock files aside), by name."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.iterdir())
        if path.is_file() and not path.name.endswith(".lock")
    }


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def db_path(data_dir: Path) -> Path:
    return data_dir / "taskbus.db"


@pytest.fixture
async def make_store(db_path: Path) -> AsyncIterator[StoreFactory]:
    """``await make_store(**kwargs)``: a started LibsqlStore (``db_path`` unless ``path=``)."""
    stores: list[LibsqlStore] = []

    async def factory(**overrides: Any) -> LibsqlStore:
        options: dict[str, Any] = {"environ": {}, **overrides}
        store = LibsqlStore(options.pop("path", db_path), **options)
        await store.start()
        stores.append(store)
        return store

    yield factory
    for store in reversed(stores):
        await asyncio.wait_for(store.close(), 10)


@pytest.fixture
async def store(make_store: StoreFactory) -> LibsqlStore:
    return await make_store()


def raw_rows(path: Path, key: MasterKey, sql: str, params: tuple[object, ...] = ()) -> list[Any]:
    """Rows of ``sql`` read with a plain libSQL connection (the store must be closed)."""
    connection = libsql.connect(str(path), encryption_key=key.database_key().secret)
    try:
        return list(connection.execute(sql, params).fetchall())
    finally:
        connection.close()
