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


class ScheduleSyntaxError(TaskbusError, ValueError):
    """A schedule's text is not in the schedule grammar; ``problem`` says what is wrong and where.

    Config turns it into a ConfigError naming the setting; the scheduler into a ScheduleError.
    """

    def __init__(self, text: str, problem: str) -> None:
        self.text = text
        self.problem = problem
        super().__init__(f"schedule {text!r}: {problem}")
