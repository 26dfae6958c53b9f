"""The packaged defaults: the AICO design's numbers, every field covered, documented."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from config import (
    CATEGORIES,
    ActorSettings,
    BusSettings,
    CategorySettings,
    PathSettings,
    ResourceSettings,
    SchedulerSettings,
    Settings,
    TaskOverride,
    default_acl,
    load_settings,
)
from config._build import TOP_KEYS
from config.loader import read_defaults

ROOT = Path(__file__).resolve().parents[2]
HOME = "/srv/taskbus"
ENV = {"TASKBUS_HOME": HOME}


def _names(cls: type[Any], *skip: str) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in skip]


def test_defaults_have_the_numbers_of_the_aico_scheduler_design() -> None:
    """The AICO design's numbers, but the concurrency raised by issue 19 (its 10 at once and
    5 user tasks made a burst of due tasks wait in line: docs/configuration.md says why)."""
    settings = load_settings(environ=ENV)
    assert settings.enabled is True
    assert settings.scheduler.max_concurrent_tasks == 64
    assert {c.name: c.concurrency for c in settings.categories} == {
        "maintenance": 2,
        "security": 1,
        "agency": 2,
        "user": 32,
        "agent": 2,
    }
    assert settings.scheduler.default_timeout_s == 300.0
    assert settings.scheduler.default_retry_count == 3
    assert settings.scheduler.default_retry_delay_s == 60.0
    assert settings.scheduler.max_retry_delay_s == 3600.0
    assert settings.scheduler.default_timezone == "UTC"
    assert settings.resources.max_cpu_percent == 80.0
    assert settings.resources.max_memory_percent == 80.0
    assert settings.resources.idle_cpu_percent == 20.0
    assert settings.resources.idle_memory_percent == 70.0
    assert settings.resources.check_interval_s == 30.0
    assert [c.name for c in settings.categories] == list(CATEGORIES)
    assert all(c.enabled for c in settings.categories)
    assert settings.tasks == ()
    assert settings.endpoints == ("tcp://127.0.0.1:7420",)
    assert settings.bus.acl == default_acl()
    assert settings.paths.data_dir == Path(HOME)
    assert settings.paths.keys_dir == Path(HOME) / "keys"
    assert settings.paths.database_path == Path(HOME) / "taskbus.db"


def test_seconds_and_percentages_are_floats() -> None:
    settings = load_settings(environ=ENV)
    for section in (settings.scheduler, settings.resources, settings.bus, settings.actors):
        for f in dataclasses.fields(section):
            if f.name.endswith(("_s", "_percent")):
                assert type(getattr(section, f.name)) is float, f.name


def test_the_classes_defaults_are_the_files_defaults() -> None:
    """Settings() in Python and the packaged file cannot drift apart."""
    expected = Settings(paths=PathSettings.under(Path(HOME)))
    assert load_settings(environ=ENV) == expected


def test_the_file_sets_every_field_of_every_section_and_nothing_else() -> None:
    defaults = read_defaults()
    assert list(defaults) == list(TOP_KEYS)
    assert list(defaults["scheduler"]) == _names(SchedulerSettings)
    assert list(defaults["resources"]) == _names(ResourceSettings)
    assert list(defaults["actors"]) == _names(ActorSettings)
    assert list(defaults["bus"]) == ["endpoints", *_names(BusSettings)]
    assert list(defaults["paths"]) == _names(PathSettings)
    assert list(defaults["categories"]) == list(CATEGORIES)
    for table in defaults["categories"].values():
        assert list(table) == _names(CategorySettings, "name")
    assert defaults["tasks"] == {}
    assert set(_names(TaskOverride, "task_id")) == {"enabled", "schedule", "timezone", "options"}


def test_every_setting_in_the_file_has_a_comment() -> None:
    lines = (ROOT / "config" / "defaults.toml").read_text(encoding="utf-8").splitlines()
    in_acl_rule = False
    for number, line in enumerate(lines):
        if line.startswith("["):
            in_acl_rule = line == "[[bus.acl]]"
            if in_acl_rule:
                assert lines[number - 1].startswith("# "), f"line {number + 1}: {line}"
        elif re.match(r"^\w+ = ", line) and not in_acl_rule:
            assert lines[number - 1].startswith("# "), f"line {number + 1}: {line}"


def _dotted_keys(table: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for name, value in table.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and value:
            keys += _dotted_keys(value, f"{key}.")
        else:
            keys.append(key)
    return keys


def test_the_documentation_names_every_key_and_its_variable() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    defaults = read_defaults()
    categories = defaults.pop("categories")
    del defaults["tasks"]  # no task by default; its keys are documented per <id>
    keys = _dotted_keys(defaults) + [
        f"categories.<name>.{name}" for name in categories["maintenance"]
    ]
    keys += [f"tasks.<id>.{name}" for name in ("enabled", "schedule", "timezone", "options")]
    for key in keys:
        assert f"`{key}`" in doc, key
        if "<" not in key:
            variable = "TASKBUS_" + key.upper().replace(".", "__")
            assert f"`{variable}`" in doc, variable


def test_the_defaults_file_ships_with_the_package() -> None:
    assert resources.files("config").joinpath("defaults.toml").is_file()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "*.toml" in pyproject["tool"]["setuptools"]["package-data"]["config"]


@pytest.mark.parametrize("section", ["scheduler", "resources", "bus", "actors"])
def test_each_section_alone_equals_its_class_defaults(section: str) -> None:
    settings = load_settings(environ=ENV)
    cls = {
        "scheduler": SchedulerSettings,
        "resources": ResourceSettings,
        "bus": BusSettings,
        "actors": ActorSettings,
    }[section]
    assert getattr(settings, section) == cls()


def test_the_documented_example_file_loads(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    example = doc.split("## Example file", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "taskbus.toml"
    path.write_text(example, encoding="utf-8")
    settings = load_settings(path, environ={"TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS": "8"})
    assert settings.scheduler.max_concurrent_tasks == 8
    assert settings.scheduler.default_timezone == "Europe/Berlin"
    assert settings.category("agency").enabled is False
    assert settings.paths.database_path == Path("/var/lib/taskbus/taskbus.db")
    assert [t.task_id for t in settings.tasks] == [
        "maintenance.log_cleanup",
        "security.key_rotation",
    ]
