"""Turns the merged tree of tables (TOML layout) into Settings, refusing unknown keys."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_type_hints

from config._checks import MISSING, shown
from config.actors import ActorSettings
from config.agents import AgentSettings
from config.bus import AclRule, BusSettings
from config.errors import ConfigError
from config.paths import default_home
from config.sections import (
    CATEGORIES,
    TASK_FIELDS,
    CategorySettings,
    PathSettings,
    ResourceSettings,
    SchedulerSettings,
    TaskOverride,
    check_task_id,
)
from config.settings import Settings
from config.store import StoreSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")

TOP_KEYS = (
    "enabled",
    "log_level",
    "scheduler",
    "resources",
    "categories",
    "agents",
    "tasks",
    "bus",
    "actors",
    "store",
    "paths",
)
BUS_KEYS = ("endpoints", *(f.name for f in fields(BusSettings)))
ACL_KEYS = tuple(f.name for f in fields(AclRule))
PATH_KEYS = tuple(f.name for f in fields(PathSettings))
PATH_DEFAULTS = {"keys_dir": "keys", "database_path": "taskbus.db"}


def build_settings(tree: Mapping[str, object], *, environ: Mapping[str, str]) -> Settings:
    """Settings from a tree of tables; ``environ`` only locates the default data directory."""
    top = _table("", tree, TOP_KEYS, "the top-level keys")
    bus = _table("bus", top.get("bus", {}), BUS_KEYS, "[bus]")
    endpoints = bus.pop("endpoints", None)
    bus_kwargs = _kwargs(BusSettings, bus)
    if "acl" in bus:
        bus_kwargs["acl"] = _acl(bus["acl"])
    extra: dict[str, Any] = {}
    if endpoints is not None:
        extra["endpoints"] = tuple(endpoints) if isinstance(endpoints, list | tuple) else endpoints
    return Settings(
        **{name: top[name] for name in ("enabled", "log_level") if name in top},
        scheduler=_section(SchedulerSettings, "scheduler", top.get("scheduler", {})),
        resources=_section(ResourceSettings, "resources", top.get("resources", {})),
        categories=_categories(top.get("categories", {})),
        agents=_section(AgentSettings, "agents", top.get("agents", {})),
        tasks=_tasks(top.get("tasks", {})),
        bus=BusSettings(**bus_kwargs),
        actors=_section(ActorSettings, "actors", top.get("actors", {})),
        store=_section(StoreSettings, "store", top.get("store", {})),
        paths=_paths(top.get("paths", {}), environ),
        **extra,
    )


def _table(key: str, value: object, known: tuple[str, ...], label: str) -> dict[str, Any]:
    """A copy of a table whose keys are all known; anything else is a ConfigError."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, shown(key, value), "a table")
    for name, item in value.items():
        if name not in known:
            full = f"{key}.{name}" if key else str(name)
            raise ConfigError(full, shown(full, item), f"one of {label}: {', '.join(known)}")
    return dict(value)


def _kwargs(cls: type[DataclassInstance], values: Mapping[str, Any]) -> dict[str, Any]:
    """The values for a dataclass, integers widened to float where the field is a float."""
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in values:
            value = values[f.name]
            if hints[f.name] is float and isinstance(value, int) and not isinstance(value, bool):
                # Too large for a float: the field's own range check reports the exact value.
                with contextlib.suppress(OverflowError):
                    value = float(value)
            out[f.name] = value
    return out


def _section(cls: type[T], key: str, value: object, **fixed: Any) -> T:
    known = tuple(f.name for f in fields(cls) if f.name not in fixed)
    return cls(**fixed, **_kwargs(cls, _table(key, value, known, f"[{key}]")))


def _categories(value: object) -> tuple[CategorySettings, ...]:
    table = _table("categories", value, CATEGORIES, "the categories")
    return tuple(
        _section(CategorySettings, f"categories.{name}", table.get(name, {}), name=name)
        for name in CATEGORIES
    )


def _tasks(value: object) -> tuple[TaskOverride, ...]:
    if not isinstance(value, Mapping):
        raise ConfigError("tasks", value, "a table of task overrides")
    overrides = []
    for task_id, table in value.items():
        check_task_id(task_id)
        key = f"tasks.{task_id}"
        if not isinstance(table, Mapping):
            expected = f"a table of task settings ({', '.join(TASK_FIELDS)})"
            raise ConfigError(key, shown(key, table), expected)
        values = _table(key, table, TASK_FIELDS, f'[tasks."{task_id}"]')
        overrides.append(TaskOverride(task_id=task_id, **values))
    return tuple(overrides)


def _acl(value: object) -> tuple[AclRule, ...]:
    if not isinstance(value, list | tuple):
        raise ConfigError("bus.acl", value, "an array of tables [[bus.acl]]")
    rules = []
    for i, item in enumerate(value):
        if isinstance(item, AclRule):
            rules.append(item)
            continue
        table = _table(f"bus.acl[{i}]", item, ACL_KEYS, "[[bus.acl]]")
        try:
            rules.append(AclRule(**{name: table.get(name, MISSING) for name in ACL_KEYS}))
        except ConfigError as exc:
            name = exc.key.removeprefix("bus.acl.")
            raise ConfigError(f"bus.acl[{i}].{name}", exc.value, exc.expected) from None
    return tuple(rules)


def _paths(value: object, environ: Mapping[str, str]) -> PathSettings:
    table = _table("paths", value, PATH_KEYS, "[paths]")
    data_dir = _path("paths.data_dir", table.get("data_dir", "")) or default_home(environ)
    resolved = {"data_dir": data_dir}
    for name, default in PATH_DEFAULTS.items():
        resolved[name] = _path(f"paths.{name}", table.get(name, "")) or data_dir / default
    return PathSettings(**resolved)


def _path(key: str, value: object) -> Path | None:
    """``~`` expanded; ``""`` is None (the default); a relative path is refused, not guessed."""
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(key, value, "a path string")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise ConfigError(key, value, "a path string")
    if text == "":
        return None
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # ~ with no home directory to expand it to
        raise ConfigError(key, value, "an absolute path (~ needs a home directory)") from None
    if not path.is_absolute():
        raise ConfigError(key, value, "an absolute path or one starting with ~")
    return path
