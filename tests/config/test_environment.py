"""TASKBUS_* environment variables: parsing, aliases, and errors that name the variable."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest

from config import ConfigError, load_settings
from config._layers import parse_environment_value

HOME = "/srv/taskbus"
ENV = {"TASKBUS_HOME": HOME}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("20", 20),
        ("-3", -3),
        ("1_000", 1000),
        ("0x10", 16),
        ("2.5", 2.5),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("[1, 2]", [1, 2]),
        ('["tcp://127.0.0.1:1", "ipc:///run/x"]', ["tcp://127.0.0.1:1", "ipc:///run/x"]),
        ("{a = 1}", {"a": 1}),
        ('"quoted text"', "quoted text"),
        ("'20'", "20"),
        ("1979-05-27", datetime.date(1979, 5, 27)),
        ("text", "text"),
        ("True", "True"),
        ("tcp://127.0.0.1:7420", "tcp://127.0.0.1:7420"),
        ("0 3 * * *", "0 3 * * *"),
        ("", ""),
        ("1\nother = 2", "1\nother = 2"),
        ("[1, 2", "[1, 2"),
    ],
)
def test_values_are_toml_when_they_parse_else_text(raw: str, value: Any) -> None:
    assert parse_environment_value(("scheduler", "x"), raw) == value


@pytest.mark.parametrize(
    "path",
    [
        ("log_level",),
        ("paths", "data_dir"),
        ("scheduler", "default_timezone"),
        ("tasks", "user.x", "schedule"),
        ("tasks", "user.x", "timezone"),
    ],
)
def test_string_settings_take_text_literally_unless_it_is_a_toml_string(
    path: tuple[str, ...],
) -> None:
    assert parse_environment_value(path, "2024") == "2024"
    assert parse_environment_value(path, "true") == "true"
    assert parse_environment_value(path, '"quoted"') == "quoted"


def test_each_type_reaches_its_setting() -> None:
    settings = load_settings(
        environ={
            **ENV,
            "TASKBUS_ENABLED": "false",
            "TASKBUS_LOG_LEVEL": "debug",
            "TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS": "20",
            "TASKBUS_SCHEDULER__DEFAULT_TIMEOUT_S": "12.5",
            "TASKBUS_SCHEDULER__DEFAULT_TIMEZONE": "Europe/Berlin",
            "TASKBUS_RESOURCES__MAX_CPU_PERCENT": "90",
            "TASKBUS_CATEGORIES__SECURITY__CONCURRENCY": "3",
            "TASKBUS_BUS__ENDPOINTS": '["tcp://0.0.0.0:7420", "ipc:///run/taskbus.sock"]',
            "TASKBUS_BUS__ACL": '[{identity = "*", action = "*", prefix = "", allow = true}]',
            "TASKBUS_ACTORS__RESTART_WINDOW_S": "30",
            "TASKBUS_TASKS__USER__REFLECT__SCHEDULE": "0 3 * * *",
            "TASKBUS_TASKS__USER__REFLECT__ENABLED": "false",
            "TASKBUS_TASKS__USER__REFLECT__OPTIONS__DEPTH": "2",
            "TASKBUS_TASKS__USER__REFLECT__OPTIONS__MODE": "deep",
        }
    )
    assert settings.enabled is False
    assert settings.log_level == "debug"
    assert settings.scheduler.max_concurrent_tasks == 20
    assert settings.scheduler.default_timeout_s == 12.5
    assert settings.scheduler.default_timezone == "Europe/Berlin"
    assert settings.resources.max_cpu_percent == 90.0
    assert type(settings.resources.max_cpu_percent) is float
    assert settings.category("security").concurrency == 3
    assert settings.endpoints == ("tcp://0.0.0.0:7420", "ipc:///run/taskbus.sock")
    assert len(settings.bus.acl) == 1
    assert settings.actors.restart_window_s == 30.0
    task = settings.task("user.reflect")
    assert task is not None
    assert (task.schedule, task.enabled, dict(task.options)) == (
        "0 3 * * *",
        False,
        {"depth": 2, "mode": "deep"},
    )


def test_names_are_case_insensitive_after_the_prefix() -> None:
    settings = load_settings(environ={**ENV, "TASKBUS_Scheduler__Max_Concurrent_Tasks": "6"})
    assert settings.scheduler.max_concurrent_tasks == 6


def test_a_dotted_task_id_in_a_variable_name_works_too() -> None:
    settings = load_settings(environ={**ENV, "TASKBUS_TASKS__USER.REFLECT__ENABLED": "true"})
    assert settings.task("user.reflect") is not None


@pytest.mark.parametrize(
    ("variable", "raw", "key", "expected"),
    [
        (
            "TASKBUS_SCHEDULER__MAX_CONCURENT_TASKS",
            "5",
            "scheduler.max_concurent_tasks",
            "[scheduler]",
        ),
        ("TASKBUS_SHEDULER__MAX_CONCURRENT_TASKS", "5", "sheduler", "top-level keys"),
        ("TASKBUS_CATEGORIES__CUSTOM__ENABLED", "true", "categories.custom", "categories:"),
        ("TASKBUS_TASKS__USER__X__COLOUR", "red", "tasks.user.x.colour", "task settings"),
        (
            "TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS",
            "many",
            "scheduler.max_concurrent_tasks",
            "an integer",
        ),
        (
            "TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS",
            "0",
            "scheduler.max_concurrent_tasks",
            "from 1",
        ),
        (
            "TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS",
            "2.0",
            "scheduler.max_concurrent_tasks",
            "integer",
        ),
        ("TASKBUS_ENABLED", "True", "enabled", "true or false"),
        ("TASKBUS_ENABLED", "1", "enabled", "true or false"),
        ("TASKBUS_RESOURCES__MAX_CPU_PERCENT", "80%", "resources.max_cpu_percent", "a number"),
        ("TASKBUS_BUS__ENDPOINTS", "tcp://127.0.0.1:1", "bus.endpoints", "non-empty array"),
        ("TASKBUS_BUS__ENDPOINTS", "[]", "bus.endpoints", "non-empty array"),
        ("TASKBUS_PATHS__DATABASE_PATH", "1234", "paths.database_path", "an absolute path"),
        ("TASKBUS_ACTORS", "5", "actors", "a table"),
        (
            "TASKBUS_SCHEDULER__DEFAULT_TIMEZONE",
            "Mars/Base",
            "scheduler.default_timezone",
            "time zone",
        ),
        ("TASKBUS_TASKS__USER__X__SCHEDULE", "every day", "tasks.user.x.schedule", "5 fields"),
    ],
)
def test_a_bad_variable_is_an_error_naming_key_value_and_variable(
    variable: str, raw: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, variable: raw})
    error = caught.value
    assert error.key == key
    assert expected in error.expected
    assert error.source == variable
    assert str(error).endswith(f"(from {variable})")


@pytest.mark.parametrize(
    "variable", ["TASKBUS_SCHEDULER____X", "TASKBUS___X", "TASKBUS_SCHEDULER__", "TASKBUS_A__.B"]
)
def test_a_malformed_variable_name_is_an_error_naming_it(variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, variable: "1"})
    assert caught.value.key == variable
    assert "double underscore" in caught.value.expected


def test_variables_that_are_not_settings_are_left_alone() -> None:
    environ = {
        **ENV,
        "TASKBUS_VENV": "/opt/venv",  # scripts/_venv.sh
        "TASKBUS_SOMETHING_ELSE": "x",
        "taskbus_scheduler__max_concurrent_tasks": "0",  # not our prefix: names are case-sensitive
        "PATH": "/usr/bin",
        "HOME": "/root",
    }
    assert load_settings(environ=environ) == load_settings(environ=ENV)


def test_two_variables_for_one_setting_are_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={
                **ENV,
                "TASKBUS_SCHEDULER__DEFAULT_RETRY_COUNT": "1",
                "TASKBUS_scheduler__default_retry_count": "2",
            }
        )
    assert caught.value.key == "scheduler.default_retry_count"
    assert "TASKBUS_SCHEDULER__DEFAULT_RETRY_COUNT" in caught.value.expected
    assert "TASKBUS_scheduler__default_retry_count" in caught.value.expected


def test_a_table_variable_and_a_key_variable_merge_the_specific_one_winning() -> None:
    settings = load_settings(
        environ={
            **ENV,
            "TASKBUS_SCHEDULER": "{max_concurrent_tasks = 3, default_retry_count = 1}",
            "TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS": "4",
        }
    )
    assert settings.scheduler.max_concurrent_tasks == 4
    assert settings.scheduler.default_retry_count == 1


# ---------------------------------------------------------------- aliases and paths


def test_taskbus_home_sets_the_data_directory_and_what_derives_from_it() -> None:
    paths = load_settings(environ={"TASKBUS_HOME": "/var/lib/taskbus"}).paths
    assert paths.data_dir == Path("/var/lib/taskbus")
    assert paths.keys_dir == Path("/var/lib/taskbus/keys")
    assert paths.database_path == Path("/var/lib/taskbus/taskbus.db")


def test_taskbus_home_beats_the_file_and_loses_to_overrides(tmp_path: Path) -> None:
    config = tmp_path / "taskbus.toml"
    config.write_text("[paths]\ndata_dir = '/from/file'\nkeys_dir = '/etc/keys'\n", "utf-8")
    assert load_settings(config, environ={}).paths.data_dir == Path("/from/file")
    paths = load_settings(config, environ={"TASKBUS_HOME": "/from/env"}).paths
    assert paths.data_dir == Path("/from/env")
    assert paths.keys_dir == Path("/etc/keys")  # set explicitly, so not derived
    assert paths.database_path == Path("/from/env/taskbus.db")
    overridden = load_settings(
        config, environ={"TASKBUS_HOME": "/from/env"}, overrides={"paths.data_dir": "/arg"}
    )
    assert overridden.paths.data_dir == Path("/arg")


def test_taskbus_home_expands_the_tilde(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    paths = load_settings(environ={"TASKBUS_HOME": "~/taskbus-data"}).paths
    assert paths.data_dir == tmp_path / "taskbus-data"


def test_without_taskbus_home_the_per_user_directory_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings(environ={}).paths.data_dir == tmp_path / ".local/share/taskbus"
    assert load_settings(environ={"TASKBUS_HOME": ""}).paths.data_dir == (
        tmp_path / ".local/share/taskbus"
    )
    xdg = {"XDG_DATA_HOME": "/xdg"}
    assert load_settings(environ=xdg).paths.data_dir == Path("/xdg/taskbus")


def test_a_relative_taskbus_home_is_refused_not_guessed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"TASKBUS_HOME": "data"})
    assert (caught.value.key, caught.value.value, caught.value.source) == (
        "paths.data_dir",
        "data",
        "TASKBUS_HOME",
    )


def test_taskbus_endpoint_is_the_one_endpoint() -> None:
    settings = load_settings(environ={**ENV, "TASKBUS_ENDPOINT": "tcp://127.0.0.1:9000"})
    assert settings.endpoints == ("tcp://127.0.0.1:9000",)
    assert load_settings(environ={**ENV, "TASKBUS_ENDPOINT": ""}).endpoints == (
        "tcp://127.0.0.1:7420",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, "TASKBUS_ENDPOINT": "tcp://nowhere"})
    assert (caught.value.key, caught.value.source) == ("bus.endpoints[0]", "TASKBUS_ENDPOINT")


@pytest.mark.parametrize(
    ("alias", "canonical", "key"),
    [
        ("TASKBUS_HOME", "TASKBUS_PATHS__DATA_DIR", "paths.data_dir"),
        ("TASKBUS_ENDPOINT", "TASKBUS_BUS__ENDPOINTS", "bus.endpoints"),
    ],
)
def test_an_alias_and_its_long_form_together_are_an_error(
    alias: str, canonical: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={alias: "/a", canonical: "/b"})
    assert caught.value.key == key
    assert alias in caught.value.expected
    assert canonical in caught.value.expected
