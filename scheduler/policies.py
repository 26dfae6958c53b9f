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
from typing import Any, Literal, TypeVar

from config.bus import require_float, require_int
from config.errors import ConfigError
from config.sections import SchedulerSettings
from scheduler.dst import FOLD_RULES, GAP_RULES, DstPolicy, FoldRule, GapRule
from scheduler.errors import ScheduleError
from scheduler.misfire import MisfirePolicy
from scheduler.retry import RetryPolicy

P = TypeVar("P")
_HOUR_S = 3600.0
_WEEK_S = 7 * 24 * _HOUR_S


OverlapRule = Literal["skip", "buffer_one", "buffer_all", "cancel_other", "allow_all"]
OVERLAP_RULES: tuple[OverlapRule, ...] = (
    "skip",
    "buffer_one",
    "buffer_all",
    "cancel_other",
    "allow_all",
)
MAX_DEPENDENCIES = 20
MAX_RUNS = 1_000_000_000


@dataclass(frozen=True, slots=True, kw_only=True)
class RunPolicy:
    """How each fire of a task is run.

    ``dst_gap``/``dst_fold``: the DST rules of a cron schedule (``scheduler.dst``).
    ``jitter_s``: dispatch up to this much after the instant (``scheduler.jitter``).
    ``timeout_s``: the executor cancels a run after this long (None: ``default_timeout_s``).
    ``overlap``: what a fire does while a run of the task is in progress, on any executor
    (docs/scheduling.md#overlap): ``skip`` (recorded as missed), ``buffer_one``,
    ``buffer_all``, ``cancel_other``, ``allow_all``. ``allow_overlap`` (older tasks) true is
    ``overlap = "allow_all"``; it always reads as ``overlap == "allow_all"``.
    ``max_runs``: after this many fires the task disables itself (None: no limit).
    ``depends_on``: task ids each of whose runs for the same logical instant must have
    succeeded before a fire of this task runs, waiting at most ``depends_wait_s``.
    ``concurrency_key``: the name of an option of the task's config whose value keys a limit
    of ``concurrency_key_limit`` runs at once across every task with that key and value.
    """

    dst_gap: GapRule = "shift"
    dst_fold: FoldRule = "first"
    jitter_s: float = 0.0
    timeout_s: float | None = None
    allow_overlap: bool = False
    overlap: OverlapRule = "skip"
    max_runs: int | None = None
    depends_on: tuple[str, ...] = ()
    depends_wait_s: float = _HOUR_S
    concurrency_key: str | None = None
    concurrency_key_limit: int = 1

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
        if self.overlap not in OVERLAP_RULES:
            raise ConfigError(
                "run_policy.overlap", self.overlap, f"one of {', '.join(OVERLAP_RULES)}"
            )
        if self.allow_overlap and self.overlap not in ("skip", "allow_all"):
            raise ConfigError(
                "run_policy.allow_overlap",
                self.allow_overlap,
                f"false with overlap = {self.overlap!r} (allow_overlap true is overlap allow_all)",
            )
        if self.allow_overlap:
            object.__setattr__(self, "overlap", "allow_all")
        object.__setattr__(self, "allow_overlap", self.overlap == "allow_all")
        if self.max_runs is not None:
            require_int("run_policy.max_runs", self.max_runs, 1, MAX_RUNS)
        if not isinstance(self.depends_on, tuple) or not all(
            isinstance(task_id, str) and task_id for task_id in self.depends_on
        ):
            raise ConfigError("run_policy.depends_on", self.depends_on, "a list of task ids")
        if len(self.depends_on) > MAX_DEPENDENCIES:
            raise ConfigError(
                "run_policy.depends_on", self.depends_on, f"at most {MAX_DEPENDENCIES} task ids"
            )
        if len(set(self.depends_on)) != len(self.depends_on):
            raise ConfigError("run_policy.depends_on", self.depends_on, "no task id twice")
        require_float("run_policy.depends_wait_s", self.depends_wait_s, 0.0, _WEEK_S)
        if self.concurrency_key is not None and (
            not isinstance(self.concurrency_key, str) or not self.concurrency_key.isidentifier()
        ):
            raise ConfigError(
                "run_policy.concurrency_key", self.concurrency_key, "the name of a task option"
            )
        require_int("run_policy.concurrency_key_limit", self.concurrency_key_limit, 1, 10_000)

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
