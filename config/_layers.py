"""Addresses of settings and the two flat layers: environment variables and explicit overrides.

A layer is a list of entries ``(path, value, source)``: ``path`` names a setting or a table in
the TOML layout (``("scheduler", "max_concurrent_tasks")``), ``source`` is what an error says the
value came from.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from typing import Any

from config.errors import ConfigError
from config.sections import TASK_FIELDS

Path_ = tuple[str, ...]
Entry = tuple[Path_, object, str]

PREFIX = "TASKBUS_"
CONFIG_VARIABLE = "TASKBUS_CONFIG"
ALIASES: dict[str, Path_] = {
    "TASKBUS_HOME": ("paths", "data_dir"),
    "TASKBUS_ENDPOINT": ("bus", "endpoints"),
}
_STRING_SETTINGS: frozenset[Path_] = frozenset(
    {
        ("log_level",),
        ("scheduler", "default_timezone"),
        ("paths", "data_dir"),
        ("paths", "keys_dir"),
        ("paths", "database_path"),
    }
)


def dotted(path: Path_) -> str:
    return ".".join(path)


def setting_path(parts: Path_) -> Path_:
    """Joins the parts of a task id: ``tasks.user.reflect.schedule`` -> tasks / user.reflect /
    schedule. A task id runs up to the first part that is a TaskOverride field name."""
    if len(parts) < 3 or parts[0] != "tasks":
        return parts
    end = next((i for i in range(2, len(parts)) if parts[i] in TASK_FIELDS), len(parts))
    return ("tasks", ".".join(parts[1:end]), *parts[end:])


def environment_entries(environ: Mapping[str, str], top_keys: tuple[str, ...]) -> list[Entry]:
    """``TASKBUS_SECTION__KEY=value`` for every variable that names a setting.

    A variable without ``__`` counts only if it names a top-level key (``TASKBUS_ENABLED``);
    others (``TASKBUS_VENV``) belong to someone else. ``TASKBUS_CONFIG`` names the file,
    ``TASKBUS_HOME`` and ``TASKBUS_ENDPOINT`` are aliases and ignored when empty.
    """
    found: dict[Path_, tuple[str, object]] = {}
    for name in sorted(environ):
        raw = environ[name]
        if not name.startswith(PREFIX) or name == CONFIG_VARIABLE:
            continue
        if name in ALIASES:
            if not raw:
                continue
            path = ALIASES[name]
            value: object = [raw] if path == ("bus", "endpoints") else raw
        else:
            rest = name.removeprefix(PREFIX).lower()
            if "__" not in rest and rest not in top_keys:
                continue
            parts = tuple(part for level in rest.split("__") for part in level.split("."))
            if not all(parts):
                raise ConfigError(
                    name, raw, "TASKBUS_<SECTION>__<KEY>: names joined by one double underscore"
                )
            path = setting_path(parts)
            value = parse_environment_value(path, raw)
        if path in found:
            raise ConfigError(
                dotted(path), raw, f"one variable setting it, not both {found[path][0]} and {name}"
            )
        found[path] = (name, value)
    entries = [(path, value, name) for path, (name, value) in found.items()]
    return sorted(entries, key=lambda entry: (len(entry[0]), entry[2]))


def parse_environment_value(path: Path_, raw: str) -> object:
    """A TOML value if ``raw`` is one (``20``, ``2.5``, ``true``, ``["a", "b"]``, ``"text"``),
    else the text itself. A string setting takes any text that is not a TOML string literally."""
    try:
        document = tomllib.loads(f"v = {raw}")
    except tomllib.TOMLDecodeError:
        return raw
    if document.keys() != {"v"}:
        return raw
    value = document["v"]
    if _is_string_setting(path) and not isinstance(value, str):
        return raw
    return value


def _is_string_setting(path: Path_) -> bool:
    if path in _STRING_SETTINGS:
        return True
    return len(path) == 3 and path[0] == "tasks" and path[2] in ("schedule", "timezone")


def override_entries(overrides: Mapping[str, object]) -> list[Entry]:
    """``{"scheduler.max_concurrent_tasks": 4}``; a mapping value sets a whole table."""
    entries: list[Entry] = []
    for key, value in overrides.items():
        parts = tuple(key.split(".")) if isinstance(key, str) else ()
        if not parts or not all(parts):
            raise ConfigError(
                str(key), value, "a dotted setting name such as 'scheduler.max_concurrent_tasks'"
            )
        entries.append((setting_path(parts), plain(value), f"overrides[{key!r}]"))
    return sorted(entries, key=lambda entry: len(entry[0]))


def flat_tasks(tasks: object) -> object:
    """``[tasks.user.reflect]`` read as ``[tasks."user.reflect"]``: nested tables that hold no
    task setting are parts of a task id. Anything that is not a table is left to the builder."""
    if not isinstance(tasks, Mapping):
        return tasks
    flat: dict[str, object] = {}
    for task_id, table in _task_tables(tasks, ()):
        if task_id in flat:
            raise ConfigError(
                f"tasks.{task_id}", task_id, "one table per task, not both quoted and dotted"
            )
        flat[task_id] = table
    return flat


def _task_tables(tasks: Mapping[Any, object], prefix: Path_) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = []
    for name, table in tasks.items():
        parts = (*prefix, str(name))
        if (
            isinstance(table, Mapping)
            and table
            and not any(key in TASK_FIELDS for key in table)
            and all(isinstance(item, Mapping) for item in table.values())
        ):
            found += _task_tables(table, parts)
        else:
            found.append((".".join(parts), table))
    return found


def plain(value: object) -> Any:
    """Mappings copied into dicts, all the way down, so that layers merge into a private tree."""
    if isinstance(value, Mapping):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    return value
