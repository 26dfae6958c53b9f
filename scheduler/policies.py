"""A task's policies from the plain maps it is stored and sent with.

A task carries three optional maps: ``misfire_policy`` (``MisfirePolicy`` fields), ``retry_policy``
(``RetryPolicy`` fields) and ``run_policy`` (``RunPolicy`` below). Only the keys a task sets are
stored; the others come from ``[scheduler]`` when the task is compiled, so changing a default
changes every task that did not choose otherwise. An unknown key, a wrong type or an out-of-range
value is a ConfigError naming ``<map>.<key>``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from config.bus import require_float
from config.errors import ConfigError
from config.sections import SchedulerSettings
from scheduler.dst import FOLD_RULES, GAP_RULES, DstPolicy, FoldRule, GapRule
from scheduler.errors import ScheduleError
from scheduler.misfire import MisfirePolicy
from scheduler.retry import RetryPolicy

P = TypeVar("P")
_HOUR_S = 3600.0
_WEEK_S = 7 * 24 * _HOUR_S


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPolicy:
    """How each fire of a task is run.

    ``dst_gap``/``dst_fold``: the DST rules of a cron schedule (``scheduler.dst``).
    ``jitter_s``: dispatch up to this much after the instant (``scheduler.jitter``).
    ``timeout_s``: the executor cancels a run after this long (None: ``default_timeout_s``).
    ``allow_overlap``: a fire may start while the previous run of the task is still running.
    """

    dst_gap: GapRule = "shift"
    dst_fold: FoldRule = "first"
    jitter_s: float = 0.0
    timeout_s: float | None = None
    allow_overlap: bool = False

    def __post_init__(self) -> None:
        if self.dst_gap not in GAP_RULES:
            raise ConfigError("run_policy.dst_gap", self.dst_gap, f"one of {', '.join(GAP_RULES)}")
        if self.dst_fold not in FOLD_RULES:
            raise ConfigError(
                "run_policy.dst_fold", self.dst_fold, f"one of {', '.join(FOLD_RULES)}"
            )
        require_float("run_policy.jitter_s", self.jitter_s, 0.0, _HOUR_S)
        if self.timeout_s is not None:
            require_float("run_policy.timeout_s", self.timeout_s, 0.001, _WEEK_S)
        if not isinstance(self.allow_overlap, bool):
            raise ConfigError("run_policy.allow_overlap", self.allow_overlap, "true or false")

    @property
    def dst(self) -> DstPolicy:
        return DstPolicy(gap=self.dst_gap, fold=self.dst_fold)


@dataclass(frozen=True, slots=True)
class TaskPolicies:
    misfire: MisfirePolicy
    retry: RetryPolicy
    run: RunPolicy

    def timeout_s(self, settings: SchedulerSettings) -> float:
        return settings.default_timeout_s if self.run.timeout_s is None else self.run.timeout_s


def task_policies(
    settings: SchedulerSettings,
    *,
    misfire: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
    run: Mapping[str, Any] | None = None,
) -> TaskPolicies:
    """A task's policies: its own maps over the defaults of ``[scheduler]``."""
    return TaskPolicies(
        misfire=_override(MisfirePolicy(), "misfire_policy", misfire),
        retry=_override(RetryPolicy.from_settings(settings), "retry_policy", retry),
        run=_override(RunPolicy(), "run_policy", run),
    )


def _override(base: P, name: str, given: Mapping[str, Any] | None) -> P:
    if given is None:
        return base
    if not isinstance(given, Mapping):
        raise ConfigError(name, given, "a map")
    known = [f.name for f in dataclasses.fields(base)]  # type: ignore[arg-type]
    changes: dict[str, Any] = {}
    for key, value in given.items():
        if key not in known:
            raise ConfigError(f"{name}.{key}", value, f"a key of {name}: {', '.join(known)}")
        changes[key] = tuple(value) if isinstance(value, list) else value
    try:
        return dataclasses.replace(base, **changes)  # type: ignore[type-var]
    except ScheduleError as error:
        raise ConfigError(name, dict(given), str(error)) from error
    except ConfigError as error:
        if error.key.startswith(f"{name}."):
            raise
        field = error.key.rpartition(".")[2]  # "misfire.grace_s" -> misfire_policy.grace_s
        raise ConfigError(f"{name}.{field}", error.value, error.expected) from error
