"""Pure schedule logic: no I/O, no clock reads; every "now" is an argument.

Schedules and their DST rules, jitter, misfire and retry policies, and the timing engine that
keeps the next due fire in a heap. The scheduler actor (in ``actors``) drives it with a clock.
"""

from scheduler.clock import (
    Clock,
    FakeClock,
    Reading,
    SystemClock,
    Timer,
    sleep,
    wall_jump_s,
    within,
)
from scheduler.compiled import clear_schedule_cache, compile_schedule
from scheduler.cron import CronSchedule, changed_meaning
from scheduler.dst import DEFAULT_DST_POLICY, DstPolicy
from scheduler.engine import TaskPlan, TimingEngine
from scheduler.errors import ScheduleError
from scheduler.jitter import jittered
from scheduler.misfire import (
    FireTimes,
    MisfirePlan,
    MisfirePolicy,
    MissedRange,
    MissedRun,
    PlannedRun,
    plan_missed,
    plan_window,
)
from scheduler.retry import RetryDecision, RetryPolicy, error_names
from scheduler.schedules import IntervalSchedule, OneShotSchedule, Schedule
from scheduler.timing import FireQueue

__all__ = [
    "DEFAULT_DST_POLICY",
    "Clock",
    "CronSchedule",
    "DstPolicy",
    "FakeClock",
    "FireQueue",
    "FireTimes",
    "IntervalSchedule",
    "MisfirePlan",
    "MisfirePolicy",
    "MissedRange",
    "MissedRun",
    "OneShotSchedule",
    "PlannedRun",
    "Reading",
    "RetryDecision",
    "RetryPolicy",
    "Schedule",
    "ScheduleError",
    "SystemClock",
    "TaskPlan",
    "Timer",
    "TimingEngine",
    "changed_meaning",
    "clear_schedule_cache",
    "compile_schedule",
    "error_names",
    "jittered",
    "plan_missed",
    "plan_window",
    "sleep",
    "wall_jump_s",
    "within",
]
