"""The root of the configuration: every section, typed, validated and immutable."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from config._checks import REDACTED, looks_secret, require_bool, require_choice
from config.actors import ActorSettings
from config.agents import AgentSettings
from config.bus import BusSettings
from config.errors import ConfigError
from config.paths import DEFAULT_ENDPOINT
from config.sections import (
    CATEGORIES,
    CategorySettings,
    PathSettings,
    ResourceSettings,
    SchedulerSettings,
    TaskOverride,
    default_categories,
)
from config.store import StoreSettings

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

LOG_LEVELS = ("debug", "info", "warning", "error")
_TCP_ENDPOINT = re.compile(
    r"tcp://(\[[0-9A-Fa-f:.]+\]|\*|[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?):(?P<port>[0-9]{1,5})"
)
_ENDPOINT_EXPECTED = "'tcp://<host>:<port>' (port 1-65535) or 'ipc://<path>'"


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything taskbus is configured with; ``config.loader.load_settings`` builds it.

    ``endpoints`` is the ``[bus]`` section's list of tcp/ipc endpoints for the broker (kept out
    of BusSettings, which the broker and every client share). ``paths`` has no default because
    the per-user data directory depends on the environment; ``PathSettings.under(dir)`` builds
    one.
    """

    enabled: bool = True
    log_level: str = "info"
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    resources: ResourceSettings = field(default_factory=ResourceSettings)
    categories: tuple[CategorySettings, ...] = field(default_factory=default_categories)
    agents: AgentSettings = field(default_factory=AgentSettings)
    tasks: tuple[TaskOverride, ...] = ()
    bus: BusSettings = field(default_factory=BusSettings)
    endpoints: tuple[str, ...] = (DEFAULT_ENDPOINT,)
    actors: ActorSettings = field(default_factory=ActorSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    paths: PathSettings

    def __post_init__(self) -> None:
        require_bool("enabled", self.enabled)
        require_choice("log_level", self.log_level, LOG_LEVELS)
        for name, cls in (
            ("scheduler", SchedulerSettings),
            ("resources", ResourceSettings),
            ("agents", AgentSettings),
            ("bus", BusSettings),
            ("actors", ActorSettings),
            ("store", StoreSettings),
            ("paths", PathSettings),
        ):
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(name, getattr(self, name), f"a {cls.__name__}")
        _check_categories(self.categories)
        _check_tasks(self.tasks)
        check_endpoints("bus.endpoints", self.endpoints)

    def category(self, name: str) -> CategorySettings:
        """The settings of one category; KeyError for a name not in CATEGORIES."""
        for category in self.categories:
            if category.name == name:
                return category
        raise KeyError(name)

    def task(self, task_id: str) -> TaskOverride | None:
        """The configured override of one task, if any."""
        return next((task for task in self.tasks if task.task_id == task_id), None)

    def to_dict(self, *, reveal_secrets: bool = False) -> dict[str, Any]:
        """The settings in the layout of the configuration file, as plain values.

        Paths become strings; ``None`` task fields are left out; task options whose name looks
        secret (``*token*``, ``*password*``...) are shown as ``"<redacted>"`` unless
        ``reveal_secrets``. ``load_settings(overrides=settings.to_dict(reveal_secrets=True))``
        rebuilds equal settings.
        """
        return {
            "enabled": self.enabled,
            "log_level": self.log_level,
            "scheduler": _plain(self.scheduler),
            "resources": _plain(self.resources),
            "categories": {c.name: _plain(c, skip=("name",)) for c in self.categories},
            "agents": _plain(self.agents),
            "tasks": {t.task_id: _task_dict(t, reveal_secrets) for t in self.tasks},
            "bus": {
                "endpoints": list(self.endpoints),
                **_plain(self.bus, skip=("acl", "roles")),
                "acl": [_plain(rule) for rule in self.bus.acl],
                "roles": {name: list(members) for name, members in self.bus.roles.items()},
            },
            "actors": _plain(self.actors),
            "store": _plain(self.store),
            "paths": {f.name: str(getattr(self.paths, f.name)) for f in fields(self.paths)},
        }


def check_endpoints(key: str, value: object) -> None:
    """A non-empty tuple of distinct tcp:// or ipc:// endpoints."""
    if not isinstance(value, tuple) or not value:
        raise ConfigError(key, value, f"a non-empty array of {_ENDPOINT_EXPECTED}")
    for i, endpoint in enumerate(value):
        if not isinstance(endpoint, str) or not _endpoint_ok(endpoint):
            raise ConfigError(f"{key}[{i}]", endpoint, _ENDPOINT_EXPECTED)
        if endpoint in value[:i]:
            raise ConfigError(f"{key}[{i}]", endpoint, "each endpoint once")


def _endpoint_ok(endpoint: str) -> bool:
    if endpoint.startswith("ipc://"):
        path = endpoint.removeprefix("ipc://")
        return bool(path) and path.isprintable()
    match = _TCP_ENDPOINT.fullmatch(endpoint)
    return match is not None and 1 <= int(match["port"]) <= 65_535


def _check_categories(categories: object) -> None:
    names = (
        [c.name for c in categories if isinstance(c, CategorySettings)]
        if isinstance(categories, tuple)
        else []
    )
    if (
        not isinstance(categories, tuple)
        or len(names) != len(categories)
        or sorted(names) != sorted(CATEGORIES)
    ):
        raise ConfigError(
            "categories",
            categories,
            f"a tuple of CategorySettings naming each of {', '.join(CATEGORIES)} once",
        )


def _check_tasks(tasks: object) -> None:
    if not isinstance(tasks, tuple) or not all(isinstance(t, TaskOverride) for t in tasks):
        raise ConfigError("tasks", tasks, "a tuple of TaskOverride")
    seen: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            raise ConfigError(f"tasks.{task.task_id}", task.task_id, "one override per task")
        seen.add(task.task_id)


def _plain(obj: DataclassInstance, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in skip}


def _task_dict(task: TaskOverride, reveal_secrets: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        name: getattr(task, name)
        for name in ("enabled", "schedule", "timezone")
        if getattr(task, name) is not None
    }
    if task.options:
        out["options"] = thawed(task.options, reveal_secrets=reveal_secrets)
    return out


def thawed(value: object, *, reveal_secrets: bool = True, name: str = "") -> Any:
    """Frozen config values (read-only maps, tuples) as plain dicts and lists; without
    ``reveal_secrets``, values under secret-looking names are redacted."""
    if name and not reveal_secrets and looks_secret(name):
        return repr(REDACTED)
    if isinstance(value, Mapping):
        return {k: thawed(v, reveal_secrets=reveal_secrets, name=k) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thawed(v, reveal_secrets=reveal_secrets) for v in value]
    return value
