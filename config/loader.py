"""``load_settings``: packaged defaults < config file < environment < explicit overrides.

Every layer is merged into one tree of tables in the layout of ``defaults.toml``; the tree is
then built into Settings, which refuses unknown keys, wrong types and out-of-range values. Each
error names the dotted key, the value, what was expected and, when it did not come from the
defaults, where it came from (the file, the variable, the override).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config._build import TOP_KEYS, build_settings
from config._checks import shown
from config._layers import (
    CONFIG_VARIABLE,
    Path_,
    dotted,
    environment_entries,
    flat_tasks,
    override_entries,
    plain,
)
from config.errors import ConfigError
from config.settings import Settings

_TOML_POSITION = re.compile(r" \(at (line \d+, column \d+|end of document)\)$")


def load_settings(
    config_file: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
) -> Settings:
    """The effective settings; ConfigError if any layer is unreadable, unknown or invalid.

    ``config_file`` defaults to ``$TASKBUS_CONFIG`` if set, else no file. A file named either
    way must exist. ``environ`` defaults to ``os.environ``. ``overrides`` take dotted keys
    (``{"scheduler.max_concurrent_tasks": 4}``) or tables (``{"scheduler": {...}}``).
    """
    env = os.environ if environ is None else environ
    tree: dict[str, Any] = {}
    origins: dict[str, str | None] = {}
    _merge(tree, (), read_defaults(), None, origins)
    file_key, path = _config_file(config_file, env)
    if path is not None:
        _merge(tree, (), read_config_file(path, key=file_key), str(path), origins)
    for entries in (environment_entries(env, TOP_KEYS), override_entries(overrides or {})):
        for entry_path, value, entry_source in entries:
            _merge(tree, entry_path, value, entry_source, origins)
    try:
        settings = build_settings(tree, environ=env)
        _check_time_zones(settings)
    except ConfigError as exc:
        source = _origin(origins, exc.key)
        if source is None or exc.source is not None:
            raise
        raise ConfigError(exc.key, exc.value, exc.expected, source=source) from None
    return settings


def read_defaults() -> dict[str, Any]:
    """The packaged defaults.toml."""
    text = resources.files("config").joinpath("defaults.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


def read_config_file(path: Path, *, key: str = "config_file") -> dict[str, Any]:
    """One TOML file; a missing, unreadable or malformed file is a ConfigError naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(key, str(path), "an existing TOML file") from None
    except OSError as exc:
        raise ConfigError(key, str(path), f"a readable TOML file ({exc.strerror})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(key, str(path), f"a UTF-8 file; byte {exc.start} is not") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position:
            message = f"{position[1]}: {message[: position.start()]}"
        raise ConfigError(key, str(path), f"valid TOML; {message}") from None


def _config_file(config_file: Path | None, env: Mapping[str, str]) -> tuple[str, Path | None]:
    if config_file is not None:
        return "config_file", Path(config_file)
    if env.get(CONFIG_VARIABLE):
        return CONFIG_VARIABLE, Path(env[CONFIG_VARIABLE])
    return "config_file", None


def _merge(
    tree: dict[str, Any],
    path: Path_,
    value: object,
    source: str | None,
    origins: dict[str, str | None],
) -> None:
    """Sets ``value`` at ``path``: tables merge key by key, anything else replaces."""
    if path == ("tasks",):
        value = flat_tasks(value)
    elif not path and isinstance(value, Mapping) and "tasks" in value:
        value = {**value, "tasks": flat_tasks(value["tasks"])}
    node = tree
    for depth, part in enumerate(path[:-1]):
        key = dotted(path[: depth + 1])
        if part not in node:
            node[part] = {}
            origins[key] = source
        child = node[part]
        if not isinstance(child, dict):
            where = f"a setting, but {key} is not a table"
            raise ConfigError(dotted(path), shown(dotted(path), value), where, source=source)
        node = child
    if not path:
        if not isinstance(value, Mapping):  # pragma: no cover - TOML documents are tables
            raise ConfigError("", value, "a table", source=source)
        for name, item in value.items():
            _put(node, name, item, key=name, source=source, origins=origins)
    else:
        _put(node, path[-1], value, key=dotted(path), source=source, origins=origins)


def _put(
    node: dict[str, Any],
    name: str,
    value: object,
    *,
    key: str,
    source: str | None,
    origins: dict[str, str | None],
) -> None:
    current = node.get(name)
    if isinstance(value, Mapping) and isinstance(current, dict):
        for child, item in value.items():
            _put(current, child, item, key=f"{key}.{child}", source=source, origins=origins)
        return
    node[name] = plain(value)
    for stale in [k for k in origins if k.startswith((f"{key}.", f"{key}["))]:
        del origins[stale]
    origins[key] = source


def _origin(origins: Mapping[str, str | None], key: str) -> str | None:
    """Where the value at ``key``, or the nearest table holding it, was last set."""
    while key:
        if key in origins:
            return origins[key]
        cut = max(key.rfind("."), key.rfind("["))
        if cut <= 0:
            break
        key = key[:cut]
    return None


def _check_time_zones(settings: Settings) -> None:
    """Zone names must exist in this system's time zone database (a file lookup, so here)."""
    zones = [("scheduler.default_timezone", settings.scheduler.default_timezone)]
    zones += [(f"tasks.{t.task_id}.timezone", t.timezone) for t in settings.tasks if t.timezone]
    for key, name in zones:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ConfigError(
                key, name, "a time zone known to this system, such as 'UTC' or 'Europe/Berlin'"
            ) from None
