"""load_settings: defaults < file < environment < overrides, and every error names its key."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from config import AclRule, ConfigError, default_acl, load_settings

HOME = "/srv/taskbus"
ENV = {"TASKBUS_HOME": HOME}
WriteConfig = Callable[[str], Path]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    def write(text: str) -> Path:
        path = tmp_path / "taskbus.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


# ---------------------------------------------------------------- precedence


def test_the_file_overrides_the_defaults_key_by_key(write_config: WriteConfig) -> None:
    path = write_config(
        "log_level = 'debug'\n"
        "[scheduler]\nmax_concurrent_tasks = 20\n"
        "[categories.agency]\nenabled = false\n"
    )
    settings = load_settings(path, environ=ENV)
    assert settings.log_level == "debug"
    assert settings.scheduler.max_concurrent_tasks == 20
    assert settings.scheduler.default_retry_count == 3  # the rest of the section stays
    assert settings.category("agency").enabled is False
    assert settings.category("agency").concurrency == 2


LAYER_CASES = [
    (
        "scheduler.max_concurrent_tasks",
        "[scheduler]\nmax_concurrent_tasks = 20",
        "TASKBUS_SCHEDULER__MAX_CONCURRENT_TASKS",
        "30",
        40,
        lambda s: s.scheduler.max_concurrent_tasks,
    ),
    (
        "resources.check_interval_s",
        "[resources]\ncheck_interval_s = 5",
        "TASKBUS_RESOURCES__CHECK_INTERVAL_S",
        "2.5",
        1,
        lambda s: s.resources.check_interval_s,
    ),
    (
        "categories.user.enabled",
        "[categories.user]\nenabled = false",
        "TASKBUS_CATEGORIES__USER__ENABLED",
        "true",
        False,
        lambda s: s.category("user").enabled,
    ),
    (
        "log_level",
        "log_level = 'warning'",
        "TASKBUS_LOG_LEVEL",
        "error",
        "debug",
        lambda s: s.log_level,
    ),
    (
        "bus.endpoints",
        "[bus]\nendpoints = ['tcp://127.0.0.1:1']",
        "TASKBUS_BUS__ENDPOINTS",
        "['tcp://127.0.0.1:2', 'ipc:///run/b']",
        ["tcp://127.0.0.1:3"],
        lambda s: list(s.endpoints),
    ),
    (
        "actors.mailbox_size",
        "[actors]\nmailbox_size = 10",
        "TASKBUS_ACTORS__MAILBOX_SIZE",
        "20",
        30,
        lambda s: s.actors.mailbox_size,
    ),
    (
        "paths.database_path",
        "[paths]\ndatabase_path = '/a/file.db'",
        "TASKBUS_PATHS__DATABASE_PATH",
        "/b/env.db",
        Path("/c/override.db"),
        lambda s: s.paths.database_path,
    ),
]


@pytest.mark.parametrize("case", [pytest.param(case, id=case[0]) for case in LAYER_CASES])
def test_each_layer_overrides_the_one_below(
    write_config: WriteConfig, case: tuple[Any, ...]
) -> None:
    key, file_text, variable, env_value, override, read = case
    path = write_config(file_text)
    defaults = read(load_settings(environ=ENV))
    from_file = read(load_settings(path, environ=ENV))
    from_env = read(load_settings(path, environ={**ENV, variable: env_value}))
    from_override = read(
        load_settings(path, environ={**ENV, variable: env_value}, overrides={key: override})
    )
    assert defaults != from_file != from_env != from_override
    assert from_override == override
    # Lower layers alone are not affected by the higher ones' absence.
    assert read(load_settings(environ={**ENV, variable: env_value})) == from_env


def test_taskbus_config_names_the_file_and_an_argument_beats_it(
    tmp_path: Path, write_config: WriteConfig
) -> None:
    from_variable = write_config("[scheduler]\nmax_concurrent_tasks = 7")
    argument = tmp_path / "other.toml"
    argument.write_text("[scheduler]\nmax_concurrent_tasks = 8", encoding="utf-8")
    env = {**ENV, "TASKBUS_CONFIG": str(from_variable)}
    assert load_settings(environ=env).scheduler.max_concurrent_tasks == 7
    assert load_settings(argument, environ=env).scheduler.max_concurrent_tasks == 8
    assert load_settings(environ={**ENV, "TASKBUS_CONFIG": ""}) == load_settings(environ=ENV)


def test_overrides_take_dotted_keys_and_tables() -> None:
    settings = load_settings(
        environ=ENV,
        overrides={
            "scheduler": {"max_concurrent_tasks": 4, "default_retry_count": 0},
            "scheduler.max_concurrent_tasks": 5,  # the more specific key wins, in any order
            "tasks.user.reflect": {"schedule": "@daily"},
            "tasks.user.reflect.enabled": False,
        },
    )
    assert settings.scheduler.max_concurrent_tasks == 5
    assert settings.scheduler.default_retry_count == 0
    assert settings.task("user.reflect") == dataclasses.replace(
        settings.tasks[0], task_id="user.reflect", enabled=False, schedule="@daily"
    )


def test_an_acl_in_a_file_replaces_the_default_rules(write_config: WriteConfig) -> None:
    path = write_config(
        "[[bus.acl]]\nidentity = 'scheduler'\naction = '*'\nprefix = ''\nallow = true\n"
    )
    settings = load_settings(path, environ=ENV)
    assert settings.bus.acl == (AclRule(identity="scheduler", action="*", prefix="", allow=True),)
    assert load_settings(environ=ENV).bus.acl == default_acl()


def test_task_overrides_merge_across_layers(write_config: WriteConfig) -> None:
    path = write_config(
        "[tasks.maintenance.log_cleanup]\n"  # dotted, the same as [tasks."maintenance.log_cleanup"]
        "schedule = '0 3 * * *'\n"
        "options = { retention_days = 30, max_size_mb = 500 }\n"
        '[tasks."agency.background_learning"]\n'
        "enabled = false\n"
        "timezone = 'Europe/Berlin'\n"
    )
    settings = load_settings(
        path,
        environ={**ENV, "TASKBUS_TASKS__MAINTENANCE__LOG_CLEANUP__OPTIONS__RETENTION_DAYS": "7"},
        overrides={"tasks.maintenance.log_cleanup.schedule": "@daily"},
    )
    cleanup = settings.task("maintenance.log_cleanup")
    assert cleanup is not None
    assert cleanup.schedule == "@daily"
    assert dict(cleanup.options) == {"retention_days": 7, "max_size_mb": 500}
    learning = settings.task("agency.background_learning")
    assert learning is not None
    assert (learning.enabled, learning.timezone, learning.schedule) == (
        False,
        "Europe/Berlin",
        None,
    )


def test_to_dict_round_trips_through_overrides(write_config: WriteConfig) -> None:
    path = write_config(
        "[tasks.user.mail]\nschedule = 'interval:60'\noptions = { api_token = 's', n = [1, 2] }\n"
        "[paths]\nkeys_dir = '/etc/taskbus/keys'\n"
    )
    settings = load_settings(path, environ=ENV)
    again = load_settings(environ=ENV, overrides=settings.to_dict(reveal_secrets=True))
    assert again == settings


def test_loaded_settings_are_immutable() -> None:
    settings = load_settings(environ=ENV, overrides={"tasks.user.x.options": {"a": [1]}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.scheduler = settings.scheduler  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.scheduler.max_concurrent_tasks = 1  # type: ignore[misc]
    assert isinstance(settings.categories, tuple)
    assert isinstance(settings.endpoints, tuple)
    assert isinstance(settings.bus.acl, tuple)
    with pytest.raises(TypeError):
        settings.tasks[0].options["a"] = 2  # type: ignore[index]
    assert settings.tasks[0].options["a"] == (1,)


# ---------------------------------------------------------------- errors from the file

FILE_ERRORS = [
    # (id, file text, key, value, words the expectation contains)
    ("top-level", "colour = 'blue'", "colour", "blue", "top-level keys: enabled, log_level"),
    (
        "in-section",
        "[scheduler]\nmax_concurent_tasks = 20",
        "scheduler.max_concurent_tasks",
        20,
        "[scheduler]: max_concurrent_tasks, default_timeout_s",
    ),
    ("section", "[sheduler]\nx = 1", "sheduler", {"x": 1}, "top-level keys"),
    (
        "unknown-category",
        "[categories.custom]\nenabled = true",
        "categories.custom",
        {"enabled": True},
        "categories: maintenance, security, agency, user",
    ),
    (
        "in-category",
        "[categories.agency]\nconcurency = 3",
        "categories.agency.concurency",
        3,
        "[categories.agency]: enabled, concurrency",
    ),
    (
        "in-task",
        "[tasks.'user.reflect']\nschedul = '@daily'",
        "tasks.user.reflect.schedul",
        "@daily",
        '[tasks."user.reflect"]: enabled, schedule, timezone, options',
    ),
    (
        "in-acl-rule",
        "[[bus.acl]]\nidentity = '*'\naction = '*'\nprefix = ''\nallow = true\ndeny = 1",
        "bus.acl[0].deny",
        1,
        "[[bus.acl]]: identity, action, prefix, allow",
    ),
    (
        "acl-rule-missing-key",
        "[[bus.acl]]\nidentity = '*'\naction = '*'\nprefix = ''",
        "bus.acl[0].allow",
        None,
        "true or false",
    ),
    (
        "acl-bad-action",
        "[[bus.acl]]\nidentity = '*'\naction = 'write'\nprefix = ''\nallow = true",
        "bus.acl[0].action",
        "write",
        "one of",
    ),
    ("acl-not-array", "[bus]\nacl = 'open'", "bus.acl", "open", "array of tables"),
    (
        "string-for-int",
        "[scheduler]\nmax_concurrent_tasks = '10'",
        "scheduler.max_concurrent_tasks",
        "10",
        "an integer from 1 to 10000",
    ),
    (
        "bool-for-int",
        "[scheduler]\ndefault_retry_count = true",
        "scheduler.default_retry_count",
        True,
        "an integer",
    ),
    (
        "float-for-int",
        "[actors]\nmailbox_size = 10.0",
        "actors.mailbox_size",
        10.0,
        "an integer",
    ),
    (
        "string-for-float",
        "[resources]\nmax_cpu_percent = '80'",
        "resources.max_cpu_percent",
        "80",
        "a number from 0.0 to 100.0",
    ),
    ("int-for-bool", "enabled = 1", "enabled", 1, "true or false"),
    ("scalar-for-table", "scheduler = 5", "scheduler", 5, "a table"),
    (
        "table-for-scalar",
        "[scheduler.max_concurrent_tasks]\nx = 1",
        "scheduler.max_concurrent_tasks",
        {"x": 1},
        "an integer",
    ),
    (
        "out-of-range",
        "[resources]\nmax_memory_percent = 101",
        "resources.max_memory_percent",
        101.0,
        "a number from 0.0 to 100.0",
    ),
    (
        "bus-out-of-range",
        "[bus]\nheartbeat_liveness = 0",
        "bus.heartbeat_liveness",
        0,
        "an integer from 1 to 100",
    ),
    (
        "bad-task-id",
        "[tasks.reflect]\nenabled = true",
        "tasks.reflect",
        "reflect",
        "<category>.<name>",
    ),
    (
        "task-id-unknown-category",
        "[tasks.custom.reflect]\nenabled = true",
        "tasks.custom.reflect",
        "custom.reflect",
        "category one of maintenance",
    ),
    (
        "bad-schedule",
        "[tasks.user.reflect]\nschedule = '0 25 * * *'",
        "tasks.user.reflect.schedule",
        "0 25 * * *",
        "hour '25' (field 2 of 5): out of range",
    ),
    (
        "unknown-zone",
        "[scheduler]\ndefault_timezone = 'Mars/Olympus_Mons'",
        "scheduler.default_timezone",
        "Mars/Olympus_Mons",
        "a time zone known to this system",
    ),
    (
        "unknown-task-zone",
        "[tasks.user.reflect]\ntimezone = 'Europe/Atlantis'",
        "tasks.user.reflect.timezone",
        "Europe/Atlantis",
        "a time zone known",
    ),
    ("relative-path", "[paths]\nkeys_dir = 'keys'", "paths.keys_dir", "keys", "an absolute path"),
    ("path-not-string", "[paths]\nkeys_dir = 5", "paths.keys_dir", 5, "a path string"),
    (
        "endpoint",
        "[bus]\nendpoints = ['tcp://localhost']",
        "bus.endpoints[0]",
        "tcp://localhost",
        "tcp://<host>:<port>",
    ),
    (
        "endpoints-not-array",
        "[bus]\nendpoints = 'tcp://127.0.0.1:1'",
        "bus.endpoints",
        "tcp://127.0.0.1:1",
        "non-empty array",
    ),
    ("log-level", "log_level = 'loud'", "log_level", "loud", "debug, info, warning, error"),
    (
        "cross-field",
        "[scheduler]\nmax_retry_delay_s = 30",
        "scheduler.max_retry_delay_s",
        30.0,
        "at least scheduler.default_retry_delay_s",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "value", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in FILE_ERRORS],
)
def test_each_error_in_a_file_names_key_value_expectation_and_file(
    write_config: WriteConfig, text: str, key: str, value: Any, expected: str
) -> None:
    path = write_config(text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=ENV)
    error = caught.value
    assert error.key == key
    if value is None:
        assert repr(error.value) == "<missing>"
    else:
        assert error.value == value
    assert expected in error.expected
    assert error.source == str(path)
    assert str(error).startswith(f"config {key}={error.value!r}: expected ")
    assert str(error).endswith(f"(from {path})")


def test_an_unknown_key_holding_a_secret_does_not_print_it(write_config: WriteConfig) -> None:
    path = write_config("[tasks.user.mail]\napi_token = 'hunter2'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=ENV)
    assert caught.value.key == "tasks.user.mail.api_token"
    assert "hunter2" not in str(caught.value)
    assert "<redacted>" in str(caught.value)


def test_a_secret_inside_an_unknown_table_does_not_print(write_config: WriteConfig) -> None:
    path = write_config("[mail]\nhost = 'smtp'\npassword = 'hunter2'\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=ENV)
    assert caught.value.key == "mail"
    assert "hunter2" not in str(caught.value)
    assert "'host': 'smtp'" in str(caught.value)


def test_one_task_written_both_quoted_and_dotted_is_an_error(write_config: WriteConfig) -> None:
    path = write_config("[tasks.user.x]\nenabled = true\n[tasks.'user.x']\nenabled = false\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=ENV)
    assert caught.value.key == "tasks.user.x"


# ---------------------------------------------------------------- unreadable files


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("[scheduler]\nmax_concurrent_tasks = 10\ndefault_retry_count = = 3\n", "line 3, column"),
        ("enabled = true\nenabled = false\n", "line 2, column"),
        ("[scheduler\n", "line 1, column"),
        ("endpoints = ['a',\n", "end of document"),
    ],
)
def test_a_toml_syntax_error_names_the_file_and_the_line(
    write_config: WriteConfig, text: str, position: str
) -> None:
    path = write_config(text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ=ENV)
    assert caught.value.key == "config_file"
    assert caught.value.value == str(path)
    assert caught.value.expected.startswith(f"valid TOML; {position}")
    assert str(path) in str(caught.value)


def test_a_missing_file_named_by_argument_or_variable_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        load_settings(missing, environ=ENV)
    assert (caught.value.key, caught.value.value) == ("config_file", str(missing))
    assert caught.value.expected == "an existing TOML file"
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={**ENV, "TASKBUS_CONFIG": str(missing)})
    assert (caught.value.key, caught.value.value) == ("TASKBUS_CONFIG", str(missing))


def test_a_directory_or_binary_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="a readable TOML file"):
        load_settings(tmp_path, environ=ENV)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"enabled = true\n\xff\xfe")
    with pytest.raises(ConfigError, match="a UTF-8 file; byte 15 is not"):
        load_settings(binary, environ=ENV)


# ---------------------------------------------------------------- errors from overrides


@pytest.mark.parametrize(
    ("overrides", "key", "source"),
    [
        ({"scheduler.max_concurrent_tasks": 0}, "scheduler.max_concurrent_tasks", None),
        ({"scheduler.max_concurrent_tasks": "4"}, "scheduler.max_concurrent_tasks", None),
        ({"scheduler.nope": 1}, "scheduler.nope", None),
        ({"nope": 1}, "nope", None),
        ({"categories.custom.enabled": True}, "categories.custom", None),
        ({"tasks.user.x.colour": "red"}, "tasks.user.x.colour", None),
        ({"scheduler": {"max_concurrent_tasks": 0}}, "scheduler.max_concurrent_tasks", "scheduler"),
        ({"scheduler.max_concurrent_tasks.x": 1}, "scheduler.max_concurrent_tasks.x", None),
        ({"bus.acl": [{"identity": "*"}]}, "bus.acl[0].action", None),
    ],
)
def test_override_errors_name_the_override(
    overrides: dict[str, object], key: str, source: str | None
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=ENV, overrides=overrides)
    assert caught.value.key == key
    given = source or next(iter(overrides))
    assert caught.value.source == f"overrides[{given!r}]"


@pytest.mark.parametrize("key", ["", "scheduler..max_concurrent_tasks", ".enabled", "enabled."])
def test_a_malformed_override_key_is_an_error(key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=ENV, overrides={key: 1})
    assert caught.value.key == key
    assert "dotted setting name" in caught.value.expected


def test_a_cross_field_error_from_defaults_and_a_layer_names_both_keys() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=ENV, overrides={"resources.max_cpu_percent": 10})
    assert caught.value.key == "resources.idle_cpu_percent"
    assert caught.value.expected == "at most resources.max_cpu_percent (10.0)"
