"""StoreSettings: every value checked at construction, errors naming the ``store.`` key."""

from __future__ import annotations

import pytest

from config import ConfigError
from config.store import StoreSettings


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
