"""Each settings class refuses bad values at construction, naming the dotted key and the value."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from config import (
    CATEGORIES,
    CategorySettings,
    ConfigError,
    PathSettings,
    ResourceSettings,
    SchedulerSettings,
    Settings,
    TaskOverride,
)
from config.schedules import check_schedule
from config.sections import default_categories

PATHS = PathSettings.under(Path("/srv/taskbus"))

BAD_VALUES: list[Any] = [
    # (class, field, value, dotted key)
    (SchedulerSettings, "max_concurrent_tasks", 0, "scheduler.max_concurrent_tasks"),
    (SchedulerSettings, "max_concurrent_tasks", 10_001, "scheduler.max_concurrent_tasks"),
    (SchedulerSettings, "max_concurrent_tasks", "10", "scheduler.max_concurrent_tasks"),
    (SchedulerSettings, "max_concurrent_tasks", True, "scheduler.max_concurrent_tasks"),
    (SchedulerSettings, "max_concurrent_tasks", 2.0, "scheduler.max_concurrent_tasks"),
    (SchedulerSettings, "default_timeout_s", 0, "scheduler.default_timeout_s"),
    (SchedulerSettings, "default_timeout_s", math.nan, "scheduler.default_timeout_s"),
    (SchedulerSettings, "default_timeout_s", math.inf, "scheduler.default_timeout_s"),
    (SchedulerSettings, "default_timeout_s", "300", "scheduler.default_timeout_s"),
    (SchedulerSettings, "default_retry_count", -1, "scheduler.default_retry_count"),
    (SchedulerSettings, "default_retry_count", 101, "scheduler.default_retry_count"),
    (SchedulerSettings, "default_retry_delay_s", -0.5, "scheduler.default_retry_delay_s"),
    (SchedulerSettings, "max_retry_delay_s", 10.0, "scheduler.max_retry_delay_s"),
    (SchedulerSettings, "max_retry_delay_s", False, "scheduler.max_retry_delay_s"),
    (SchedulerSettings, "default_timezone", "", "scheduler.default_timezone"),
    (SchedulerSettings, "default_timezone", "../etc/passwd", "scheduler.default_timezone"),
    (SchedulerSettings, "default_timezone", 1, "scheduler.default_timezone"),
    (ResourceSettings, "max_cpu_percent", 100.5, "resources.max_cpu_percent"),
    (ResourceSettings, "max_cpu_percent", -1, "resources.max_cpu_percent"),
    (ResourceSettings, "max_memory_percent", "80%", "resources.max_memory_percent"),
    (ResourceSettings, "idle_cpu_percent", 90.0, "resources.idle_cpu_percent"),
    (ResourceSettings, "idle_memory_percent", 81, "resources.idle_memory_percent"),
    (ResourceSettings, "idle_memory_percent", None, "resources.idle_memory_percent"),
    (ResourceSettings, "check_interval_s", 0, "resources.check_interval_s"),
    (ResourceSettings, "check_interval_s", 86_401, "resources.check_interval_s"),
]


@pytest.mark.parametrize(
    ("cls", "name", "value", "key"),
    BAD_VALUES,
    ids=[f"{key}={value!r}" for _, _, value, key in BAD_VALUES],
)
def test_bad_value_names_key_and_value(
    cls: Callable[..., Any], name: str, value: Any, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        cls(**{name: value})
    assert caught.value.key == key
    assert caught.value.value is value or caught.value.value == value
    assert str(caught.value).startswith(f"config {key}={value!r}: expected ")


@pytest.mark.parametrize(
    ("cls", "name", "value"),
    [
        (SchedulerSettings, "max_concurrent_tasks", 1),
        (SchedulerSettings, "max_concurrent_tasks", 10_000),
        (SchedulerSettings, "default_retry_count", 0),
        (SchedulerSettings, "default_timezone", "America/Argentina/Buenos_Aires"),
        (SchedulerSettings, "default_timezone", "Etc/GMT+5"),
        (ResourceSettings, "max_cpu_percent", 100),
        (ResourceSettings, "idle_cpu_percent", 0),
        (ResourceSettings, "check_interval_s", 0.1),
    ],
)
def test_bounds_are_inclusive_and_ints_count_as_floats(
    cls: Callable[..., Any], name: str, value: Any
) -> None:
    assert getattr(cls(**{name: value}), name) == value


def test_cross_field_errors_name_both_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        SchedulerSettings(default_retry_delay_s=120, max_retry_delay_s=60)
    assert caught.value.key == "scheduler.max_retry_delay_s"
    assert "scheduler.default_retry_delay_s (120)" in caught.value.expected
    with pytest.raises(ConfigError) as caught:
        ResourceSettings(max_memory_percent=50)
    assert caught.value.key == "resources.idle_memory_percent"
    assert "resources.max_memory_percent (50)" in caught.value.expected


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"name": "custom"}, "categories.custom"),
        ({"name": "Agency"}, "categories.Agency"),
        ({"name": "agency", "enabled": "yes"}, "categories.agency.enabled"),
        ({"name": "agency", "enabled": 1}, "categories.agency.enabled"),
        ({"name": "agency", "concurrency": 0}, "categories.agency.concurrency"),
        ({"name": "user", "concurrency": 1.0}, "categories.user.concurrency"),
    ],
)
def test_category_errors_name_the_category(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        CategorySettings(**kwargs)
    assert caught.value.key == key


def test_an_unknown_category_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="one of maintenance, security, agency, user"):
        CategorySettings(name="custom")


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"task_id": "reflect"}, "tasks.reflect"),
        ({"task_id": "custom.reflect"}, "tasks.custom.reflect"),
        ({"task_id": "user.Reflect"}, "tasks.user.Reflect"),
        ({"task_id": "user..reflect"}, "tasks.user..reflect"),
        ({"task_id": "user.options"}, "tasks.user.options"),
        ({"task_id": 7}, "tasks.7"),
        ({"task_id": "user.reflect", "enabled": "no"}, "tasks.user.reflect.enabled"),
        ({"task_id": "user.reflect", "schedule": "0 3 * *"}, "tasks.user.reflect.schedule"),
        ({"task_id": "user.reflect", "schedule": 5}, "tasks.user.reflect.schedule"),
        ({"task_id": "user.reflect", "timezone": "Not a zone"}, "tasks.user.reflect.timezone"),
        ({"task_id": "user.reflect", "options": ["a"]}, "tasks.user.reflect.options"),
        ({"task_id": "user.reflect", "options": {"a": {1, 2}}}, "tasks.user.reflect.options.a"),
        ({"task_id": "user.reflect", "options": {"a": [None]}}, "tasks.user.reflect.options.a[0]"),
    ],
)
def test_task_override_errors_name_the_task(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TaskOverride(**kwargs)
    assert caught.value.key == key


def test_task_options_are_frozen_all_the_way_down() -> None:
    options = {"a": 1, "nested": {"list": [1, {"b": 2}]}}
    task = TaskOverride(task_id="maintenance.log_cleanup", options=options)
    options["a"] = 2
    assert task.options["a"] == 1
    assert isinstance(task.options, MappingProxyType)
    nested = task.options["nested"]
    assert isinstance(nested, MappingProxyType)
    assert nested["list"] == (1, MappingProxyType({"b": 2}))
    with pytest.raises(TypeError):
        task.options["a"] = 3  # type: ignore[index]
    assert task.category == "maintenance"


def test_task_options_never_print() -> None:
    task = TaskOverride(task_id="user.mail", options={"api_token": "hunter2"})
    assert "hunter2" not in repr(task)
    settings = Settings(paths=PATHS, tasks=(task,))
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.to_dict())
    assert settings.to_dict()["tasks"]["user.mail"]["options"] == {"api_token": "<redacted>"}
    revealed = settings.to_dict(reveal_secrets=True)
    assert revealed["tasks"]["user.mail"]["options"] == {"api_token": "hunter2"}


@pytest.mark.parametrize(
    "schedule",
    [
        "0 3 * * *",
        "*/5 * * * *",
        "0 1 1 * *",
        "0-30/10 8-18 * jan-mar mon-fri",
        "5,35 */2 1,15 * 0,7",
        "0 0 * * SUN",
        "@daily",
        "@hourly",
        "@annually",
        "interval:300",
        "at:2025-01-15T10:00:00Z",
        "at:2025-01-15T10:00:00+01:00",
        "30 0 3 * * *",  # 6 fields, seconds first
        "*/10 * * * * *",
        "every 30s",
        "every 5m",
        "every 2h",
        "every 1d",
        "0 22-2 * * *",  # a range that runs backwards wraps around, as croniter reads it
        "0 0 L * *",  # croniter's extensions: last day of the month...
        "0 0 * * 5#2",  # ...and the second Friday
    ],
)
def test_schedules_in_the_documented_syntax_pass(schedule: str) -> None:
    check_schedule("tasks.user.x.schedule", schedule)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("0 3 * *", "cron has 5 fields, or 6 with seconds first; found 4"),
        ("0 3 * * * * *", "cron has 5 fields, or 6 with seconds first; found 7"),
        ("60 * * * *", "minute '60' (field 1 of 5): out of range; minute takes 0-59"),
        ("0 24 * * *", "hour '24' (field 2 of 5): out of range; hour takes 0-23"),
        ("0 0 0 * *", "day-of-month '0' (field 3 of 5): out of range"),
        ("0 0 * 13 *", "month '13' (field 4 of 5): out of range"),
        ("0 0 * * 8", "day-of-week '8' (field 5 of 5): out of range"),
        ("0 0 * foo *", "month 'foo' (field 4 of 5): not a value, range, list, step or name"),
        ("60 0 3 * * *", "second '60' (field 1 of 6): out of range; second takes 0-59"),
        ("0 60 3 * * *", "minute '60' (field 2 of 6): out of range"),
        ("*/0 * * * *", "minute '*/0' (field 1 of 5): a step is 1 or more"),
        ("? * * * *", "minute '?' (field 1 of 5): '?' only stands for day-of-month"),
        ("H * * * *", "minute 'H' (field 1 of 5): hashed (H) and random (R) values"),
        ("0 R * * *", "hour 'R' (field 2 of 5): hashed (H) and random (R) values"),
        ("0 0 30 2 *", "never fires: no date has day-of-month '30' in month '2'"),
        ("@fortnightly", "@fortnightly is not one of"),
        ("interval:0", "interval from 1 to"),
        ("interval:5m", "whole number of seconds, not '5m' (or write 'every 5m')"),
        ("every 5", "'every' takes a whole number and a unit s, m, h or d"),
        ("every 0s", "interval from 1 to"),
        ("every 367d", "interval from 1 to 31622400 seconds"),
        ("at:tomorrow", "ISO 8601"),
        ("at:2025-01-15T10:00:00", "has no UTC offset"),
        ("0 3 * * *\n", "printable"),
        ("", "cron has 5 fields, or 6 with seconds first; found 0"),
    ],
)
def test_bad_schedules_say_what_is_wrong(schedule: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_schedule("tasks.user.x.schedule", schedule)
    assert caught.value.key == "tasks.user.x.schedule"
    assert caught.value.value == schedule
    assert reason in caught.value.expected


@pytest.mark.parametrize("name", ["data_dir", "keys_dir", "database_path"])
@pytest.mark.parametrize("value", [Path("relative"), "/srv/taskbus", None])
def test_paths_are_absolute_path_objects(name: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        dataclasses.replace(PATHS, **{name: value})
    assert caught.value.key == f"paths.{name}"


def test_paths_under_a_data_directory() -> None:
    assert PATHS.keys_dir == Path("/srv/taskbus/keys")
    assert PATHS.database_path == Path("/srv/taskbus/taskbus.db")
    assert PATHS.ipc_endpoint == "ipc:///srv/taskbus/run/broker.sock"


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"enabled": "true"}, "enabled"),
        ({"log_level": "verbose"}, "log_level"),
        ({"log_level": "INFO"}, "log_level"),
        ({"scheduler": {"max_concurrent_tasks": 1}}, "scheduler"),
        ({"paths": "/srv"}, "paths"),
        ({"categories": default_categories()[:3]}, "categories"),
        ({"categories": (*default_categories(), default_categories()[0])}, "categories"),
        ({"categories": list(default_categories())}, "categories"),
        ({"tasks": [TaskOverride(task_id="user.a")]}, "tasks"),
        ({"tasks": (TaskOverride(task_id="user.a"),) * 2}, "tasks.user.a"),
        ({"endpoints": ()}, "bus.endpoints"),
        ({"endpoints": ["tcp://127.0.0.1:7420"]}, "bus.endpoints"),
        ({"endpoints": ("tcp://127.0.0.1:7420", "inproc://x")}, "bus.endpoints[1]"),
        ({"endpoints": ("tcp://127.0.0.1:0",)}, "bus.endpoints[0]"),
        ({"endpoints": ("tcp://127.0.0.1:65536",)}, "bus.endpoints[0]"),
        ({"endpoints": ("tcp://127.0.0.1",)}, "bus.endpoints[0]"),
        ({"endpoints": ("ipc://",)}, "bus.endpoints[0]"),
        ({"endpoints": ("tcp://a:1", "tcp://a:1")}, "bus.endpoints[1]"),
    ],
)
def test_settings_refuse_bad_values(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings(**{"paths": PATHS, **kwargs})
    assert caught.value.key == key


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:7420",
        "tcp://*:7420",
        "tcp://[::1]:7420",
        "tcp://host.lan:1",
        "ipc:///run/x",
    ],
)
def test_endpoints_accepted(endpoint: str) -> None:
    assert Settings(paths=PATHS, endpoints=(endpoint,)).endpoints == (endpoint,)


def test_settings_lookups() -> None:
    task = TaskOverride(task_id="agency.learn", enabled=False)
    settings = Settings(paths=PATHS, tasks=(task,))
    assert settings.category("agency").concurrency == 2
    with pytest.raises(KeyError):
        settings.category("custom")
    assert settings.task("agency.learn") is task
    assert settings.task("agency.other") is None
    assert [c.name for c in settings.categories] == list(CATEGORIES)


@pytest.mark.parametrize(
    "make",
    [
        SchedulerSettings,
        ResourceSettings,
        lambda: CategorySettings(name="user"),
        lambda: TaskOverride(task_id="user.x"),
        lambda: PATHS,
        lambda: Settings(paths=PATHS),
    ],
    ids=["scheduler", "resources", "category", "task", "paths", "settings"],
)
def test_every_class_is_frozen_slotted_and_keyword_only(make: Callable[[], Any]) -> None:
    obj = make()
    first = dataclasses.fields(obj)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(obj, first, getattr(obj, first))
    assert not hasattr(obj, "__dict__")
    with pytest.raises(TypeError):
        type(obj)(getattr(obj, first))
