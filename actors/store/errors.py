"""The store's errors: one branch of TaskbusError, with lookup and conflict sub-branches."""

from __future__ import annotations

from config.errors import TaskbusError


class StoreError(TaskbusError):
    """The store cannot do what was asked: it cannot open its file, a value is too large or of
    the wrong shape, the disk failed. The message names the file, the record or the field.
    """


class WrongKey(StoreError):
    """The file does not open with the key given: a wrong key, or not a taskbus database."""


class InvalidValue(StoreError, ValueError):
    """A value given to the store is out of its domain; ``field`` names it (``task_id``...)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NotFound(StoreError, LookupError):
    """A task, execution or lease the request names does not exist."""


class Conflict(StoreError):
    """The write lost a race: a version or lease token is no longer current."""


class LeaseLost(Conflict):
    """The lease is held by someone else, expired, or has a newer fencing token."""
