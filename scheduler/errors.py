"""The scheduler's branch of taskbus's exception hierarchy."""

from __future__ import annotations

from config.errors import TaskbusError


class ScheduleError(TaskbusError, ValueError):
    """A schedule, time zone, DST policy or instant the schedule maths cannot use.

    The message names the offending value and says what was expected; a schedule's syntax error
    is chained as ``__cause__`` (a ``config.errors.ScheduleSyntaxError``).
    """
