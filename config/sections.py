"""The scheduler's settings, one frozen class per section of the configuration file."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType

from config._checks import (
    require_absolute_path,
    require_bool,
    require_timezone_name,
    shown,
)
from config.bus import require_float, require_int
from config.errors import ConfigError
from config.schedules import check_schedule

CATEGORIES = ("maintenance", "security", "agency", "user", "agent")
TASK_FIELDS = ("enabled", "schedule", "timezone", "options")
_TASK_ID = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)+")
_TASK_ID_EXPECTED = (
    f"a task id '<category>.<name>' in lowercase letters, digits and _, with category one of "
    f"{', '.join(CATEGORIES)} and no part named {', '.join(TASK_FIELDS)}"
)
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_OPTION_SCALARS = (str, int, float, bool, date, datetime, time)
_WEEK_S = 7 * 24 * 3600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings:
    """Limits and defaults of the scheduler; a task's own settings override the ``default_*``."""

    max_concurrent_tasks: int = 64
    default_timeout_s: float = 300.0
    default_retry_count: int = 3
    default_retry_delay_s: float = 60.0
    max_retry_delay_s: float = 3600.0
    default_timezone: str = "UTC"
    lease_ttl_s: float = 10.0
    recovery_window_s: float = _WEEK_S
    task_modules: tuple[str, ...] = ()
    poison_after: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.task_modules, list):
            object.__setattr__(self, "task_modules", tuple(self.task_modules))
        if not isinstance(self.task_modules, tuple) or not all(
            isinstance(m, str) and _MODULE.fullmatch(m) for m in self.task_modules
        ):
            raise ConfigError(
                "scheduler.task_modules", self.task_modules, "a list of module names ('my.tasks')"
            )
        require_int("scheduler.poison_after", self.poison_after, 1, 100)
        require_float("scheduler.lease_ttl_s", self.lease_ttl_s, 1.0, 3600.0)
        require_float("scheduler.recovery_window_s", self.recovery_window_s, 60.0, 30 * 86_400.0)
        require_int("scheduler.max_concurrent_tasks", self.max_concurrent_tasks, 1, 10_000)
        require_float("scheduler.default_timeout_s", self.default_timeout_s, 0.001, _WEEK_S)
        require_int("scheduler.default_retry_count", self.default_retry_count, 0, 100)
        require_float("scheduler.default_retry_delay_s", self.default_retry_delay_s, 0.0, 86_400.0)
        require_float("scheduler.max_retry_delay_s", self.max_retry_delay_s, 0.0, _WEEK_S)
        if self.max_retry_delay_s < self.default_retry_delay_s:
            raise ConfigError(
                "scheduler.max_retry_delay_s",
                self.max_retry_delay_s,
                f"at least scheduler.default_retry_delay_s ({self.default_retry_delay_s})",
            )
        require_timezone_name("scheduler.default_timezone", self.default_timezone)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceSettings:
    """Tasks are deferred above the ``max_*`` loads; idle-only tasks run below the ``idle_*``."""

    max_cpu_percent: float = 80.0
    max_memory_percent: float = 80.0
    idle_cpu_percent: float = 20.0
    idle_memory_percent: float = 70.0
    check_interval_s: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "max_cpu_percent",
            "max_memory_percent",
            "idle_cpu_percent",
            "idle_memory_percent",
        ):
            require_float(f"resources.{name}", getattr(self, name), 0.0, 100.0)
        require_float("resources.check_interval_s", self.check_interval_s, 0.1, 86_400.0)
        for kind in ("cpu", "memory"):
            idle, limit = (
                getattr(self, f"idle_{kind}_percent"),
                getattr(self, f"max_{kind}_percent"),
            )
            if idle > limit:
                raise ConfigError(
                    f"resources.idle_{kind}_percent",
                    idle,
                    f"at most resources.max_{kind}_percent ({limit})",
                )


@dataclass(frozen=True, slots=True, kw_only=True)
class CategorySettings:
    """One task category; ``concurrency`` is further capped by scheduler.max_concurrent_tasks."""

    name: str
    enabled: bool = True
    concurrency: int = 1

    def __post_init__(self) -> None:
        if self.name not in CATEGORIES:
            raise ConfigError(
                f"categories.{self.name}", self.name, f"a category: one of {', '.join(CATEGORIES)}"
            )
        require_bool(f"categories.{self.name}.enabled", self.enabled)
        require_int(f"categories.{self.name}.concurrency", self.concurrency, 1, 10_000)


def default_categories() -> tuple[CategorySettings, ...]:
    """The categories as defaults.toml sets them: maintenance, security, agency, user, agent."""
    return (
        CategorySettings(name="maintenance", concurrency=2),
        CategorySettings(name="security", concurrency=1),
        CategorySettings(name="agency", concurrency=2),
        CategorySettings(name="user", concurrency=32),
        CategorySettings(name="agent", concurrency=2),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskOverride:
    """What the configuration changes about one task; ``None`` keeps the task's own value.

    ``options`` is frozen (tables become read-only mappings, arrays tuples) and left out of
    ``repr`` because a task's options may hold secrets.
    """

    task_id: str
    enabled: bool | None = None
    schedule: str | None = None
    timezone: str | None = None
    options: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    def __post_init__(self) -> None:
        check_task_id(self.task_id)
        key = f"tasks.{self.task_id}"
        if self.enabled is not None:
            require_bool(f"{key}.enabled", self.enabled)
        if self.schedule is not None:
            check_schedule(f"{key}.schedule", self.schedule)
        if self.timezone is not None:
            require_timezone_name(f"{key}.timezone", self.timezone)
        object.__setattr__(self, "options", _frozen_table(f"{key}.options", self.options))

    @property
    def category(self) -> str:
        return self.task_id.split(".", 1)[0]


def check_task_id(task_id: object) -> None:
    """``<category>.<name>``: the category is one of CATEGORIES; no part is a TaskOverride field
    name, so that ``tasks.<id>.<field>`` in a dotted key or an environment variable is unambiguous.
    """
    parts = task_id.split(".") if isinstance(task_id, str) else []
    if (
        not isinstance(task_id, str)
        or not _TASK_ID.fullmatch(task_id)
        or parts[0] not in CATEGORIES
        or any(part in TASK_FIELDS for part in parts)
    ):
        raise ConfigError(f"tasks.{task_id}", task_id, _TASK_ID_EXPECTED)


def _frozen_table(key: str, value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, shown(key, value), "a table")
    frozen: dict[str, object] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}.{name}", shown(key, item), "a table whose keys are names")
        frozen[name] = _frozen_value(f"{key}.{name}", item)
    return MappingProxyType(frozen)


def _frozen_value(key: str, value: object) -> object:
    if isinstance(value, Mapping):
        return _frozen_table(key, value)
    if isinstance(value, list | tuple):
        return tuple(_frozen_value(f"{key}[{i}]", item) for i, item in enumerate(value))
    if not isinstance(value, _OPTION_SCALARS):
        raise ConfigError(key, shown(key, value), "a TOML value (string, number, date, array...)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class PathSettings:
    """Absolute paths; the loader derives the defaults from ``data_dir`` (see ``under``)."""

    data_dir: Path
    keys_dir: Path
    database_path: Path

    def __post_init__(self) -> None:
        require_absolute_path("paths.data_dir", self.data_dir)
        require_absolute_path("paths.keys_dir", self.keys_dir)
        require_absolute_path("paths.database_path", self.database_path)

    @classmethod
    def under(cls, data_dir: Path) -> PathSettings:
        """Keys in ``<data_dir>/keys``, the database in ``<data_dir>/taskbus.db``."""
        return cls(
            data_dir=data_dir, keys_dir=data_dir / "keys", database_path=data_dir / "taskbus.db"
        )

    @property
    def ipc_endpoint(self) -> str:
        """The broker's local ipc socket, under the data directory."""
        return f"ipc://{self.data_dir / 'run' / 'broker.sock'}"
