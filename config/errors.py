"""The root of taskbus's exception hierarchy.

It lives in ``config`` because every other package may import ``config`` and nothing below it.
"""

from __future__ import annotations


class TaskbusError(Exception):
    """Base class of every error taskbus raises on purpose."""


class ConfigError(TaskbusError, ValueError):
    """A setting is unknown, of the wrong type or out of range.

    ``source`` says where the offending value came from (a file, an environment variable, an
    explicit override) when the loader knows it; it is appended to the message.
    """

    def __init__(
        self, key: str, value: object, expected: str, *, source: str | None = None
    ) -> None:
        self.key = key
        self.value = value
        self.expected = expected
        self.source = source
        message = f"config {key}={value!r}: expected {expected}"
        super().__init__(f"{message} (from {source})" if source else message)
