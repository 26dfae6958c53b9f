"""The scheduler's branch of taskbus's exception hierarchy."""

from __future__ import annotations

from config.errors import TaskbusError


class TimedOut(TaskbusError, TimeoutError):
    """``scheduler.within``'s deadline passed on the clock it was given (a TimeoutError that the
    awaited work raised of its own is not one)."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(f"timed out after {timeout_s:g}s")


class ScheduleError(TaskbusError, ValueError):
    """A schedule, time zone, DST policy or instant the schedule maths cannot use.

    The message names the offending value and says what was expected; a schedule's syntax error
    is chained as ``__cause__`` (a ``config.errors.ScheduleSyntaxError``).
    """
