"""What a run returns: success, plain data stored with the execution, skipped, error."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.errors import TaskUsageError

_SCALARS = (str, int, float, bool, bytes, type(None))


@dataclass(frozen=True, slots=True)
class TaskResult:
    """``data`` holds msgpack-able plain values only (checked here, so that a task, not the
    executor's encoder, is blamed); a skipped run is a success; a failure carries ``error``.
    """

    success: bool
    data: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False
    error: str | None = None

    def __post_init__(self) -> None:
        _check_plain("data", self.data)
        if self.skipped and not self.success:
            raise TaskUsageError("a skipped run is not a failure: skipped needs success=True")
        if self.success == (self.error is not None):
            raise TaskUsageError("a failed run has an error message and a successful one none")
        if self.error is not None and (not isinstance(self.error, str) or not self.error):
            raise TaskUsageError(f"error must be a non-empty str, not {self.error!r}")

    @classmethod
    def ok(cls, **data: Any) -> TaskResult:
        return cls(success=True, data=data)

    @classmethod
    def skip(cls, reason: str) -> TaskResult:
        """Nothing to do this time (``data`` = ``{"reason": reason}``)."""
        return cls(success=True, data={"reason": reason}, skipped=True)

    @classmethod
    def fail(cls, error: str, **data: Any) -> TaskResult:
        return cls(success=False, data=data, error=error)


def check_plain(path: str, value: object) -> None:
    """TaskUsageError naming ``path`` (``result <path>: ...``) unless ``value`` is plain data
    (msgpack-able: None, bool, int, float, str, bytes, and lists and str-keyed maps of them)."""
    _check_plain(path, value)


def _check_plain(path: str, value: object) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(f"{path}[{index}]", item)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TaskUsageError(f"result {path}: keys are str, not {type(key).__name__}")
            _check_plain(f"{path}.{key}", item)
        return
    raise TaskUsageError(
        f"result {path}: {type(value).__name__} is not a plain value "
        "(None, bool, int, float, str, bytes, list, dict); convert it (datetime.isoformat())"
    )
