"""StoreSettings: every value checked at construction, errors naming the ``store.`` key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.store import StoreSettings
from store import LibsqlStore
from store._sql import scalar
from store.errors import InvalidValue
from store.records import TaskSpec


def test_the_defaults_are_durable_and_bounded() -> None:
    settings = StoreSettings()
    assert (settings.synchronous, settings.max_batch, settings.max_value_bytes) == (
        "full",
        512,
        65_536,
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("synchronous", "off"),
        ("max_batch", 0),
        ("max_value_bytes", 10),
        ("max_error_chars", True),
        ("retention_days", -1.0),
        ("max_executions", 0),
        ("retention_chunk_rows", 0),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as caught:
        StoreSettings(**{field: value})  # type: ignore[arg-type]
    assert caught.value.key == f"store.{field}"


async def test_the_store_section_of_the_configuration_reaches_the_store(tmp_path: Path) -> None:
    settings = load_settings(
        environ={
            "TASKBUS_HOME": str(tmp_path),
            "TASKBUS_STORE__SYNCHRONOUS": "normal",
            "TASKBUS_STORE__MAX_VALUE_BYTES": "1024",
        }
    )
    store = LibsqlStore.from_settings(settings, environ={})
    await store.start()
    try:
        assert await store.worker.read(lambda c: scalar(c, "PRAGMA synchronous")) == 1  # NORMAL
        big = TaskSpec(
            task_id="user.big", task_class="x", schedule="@daily", config={"blob": "x" * 2048}
        )
        with pytest.raises(InvalidValue, match="config"):
            await store.put_task(big, now=datetime.now(UTC))
    finally:
        await store.close()
