"""The root of taskbus's exception hierarchy.

It lives in ``config`` because every other package may import ``config`` and nothing below it.
"""

from __future__ import annotations


class TaskbusError(Exception):
    """Base class of every error taskbus raises on purpose."""


class ConfigError(TaskbusError, ValueError):
    """A setting is unknown, of the wrong type or out of range."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"config {key}={value!r}: expected {expected}")
