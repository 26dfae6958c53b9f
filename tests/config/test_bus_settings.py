"""BusSettings and AclRule refuse bad values at construction, naming key, value and expectation."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from bus.acl import Acl
from bus.errors import EnvelopeError
from bus.topics import check_prefix
from config import AclRule, BusSettings, ConfigError, TaskbusError, default_acl
from config.bus import DEFAULT_MAX_MESSAGE_BYTES

INT_FIELDS = {
    "max_message_bytes": (1024, 256 * 1024 * 1024),
    "heartbeat_liveness": (1, 100),
    "send_hwm": (1, 10_000_000),
    "receive_hwm": (1, 10_000_000),
}
FLOAT_FIELDS = {
    "heartbeat_interval_s": (0.01, 3600.0),
    "ask_timeout_s": (0.001, 86_400.0),
    "reconnect_max_s": (0.01, 3600.0),
}


def _bad_int_values(low: int, high: int) -> list[Any]:
    return [low - 1, high + 1, -1, 1.5, float(low), "10", None, True, False, [low], 10**100]


def _bad_float_values(low: float, high: float) -> list[Any]:
    return [
        low / 2,
        high * 2,
        0,
        -1.0,
        math.nan,
        math.inf,
        -math.inf,
        "1.0",
        None,
        True,
        [1.0],
        10**400,
    ]


INT_CASES = [
    pytest.param(name, value, f"an integer from {low} to {high}", id=f"{name}={value!r}")
    for name, (low, high) in INT_FIELDS.items()
    for value in _bad_int_values(low, high)
]
FLOAT_CASES = [
    pytest.param(name, value, f"a number from {low} to {high}", id=f"{name}={value!r:.20}")
    for name, (low, high) in FLOAT_FIELDS.items()
    for value in _bad_float_values(low, high)
]


@pytest.mark.parametrize(("name", "value", "expected"), INT_CASES + FLOAT_CASES)
def test_each_bad_value_is_a_config_error_naming_key_value_and_expectation(
    name: str, value: Any, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        BusSettings(**{name: value})
    error = caught.value
    assert error.key == f"bus.{name}"
    assert error.value is value
    assert error.expected == expected
    assert str(error) == f"config bus.{name}={value!r}: expected {expected}"


@pytest.mark.parametrize(
    ("name", "value"),
    [(name, bound) for name, bounds in {**INT_FIELDS, **FLOAT_FIELDS}.items() for bound in bounds],
)
def test_bounds_are_inclusive(name: str, value: Any) -> None:
    assert getattr(BusSettings(**{name: value}), name) == value


def test_integers_are_accepted_for_seconds() -> None:
    assert BusSettings(ask_timeout_s=2).ask_timeout_s == 2


def test_defaults_are_valid_and_documented() -> None:
    settings = BusSettings()
    assert settings.max_message_bytes == DEFAULT_MAX_MESSAGE_BYTES == 1024 * 1024
    assert settings.peer_timeout_s == settings.heartbeat_interval_s * settings.heartbeat_liveness
    assert settings.acl == default_acl()


@pytest.mark.parametrize(
    "acl",
    [
        list(default_acl()),
        (*default_acl(), "allow everything"),
        ({"identity": "*", "action": "*", "prefix": "", "allow": True},),
        None,
    ],
    ids=["list", "string-rule", "dict-rule", "none"],
)
def test_acl_must_be_a_tuple_of_rules(acl: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        BusSettings(acl=acl)
    assert (caught.value.key, caught.value.expected) == ("bus.acl", "a tuple of AclRule")
    assert caught.value.value is acl


def test_settings_are_frozen_and_keyword_only() -> None:
    settings = BusSettings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.send_hwm = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        BusSettings(2048)  # type: ignore[call-arg]


def test_config_error_is_a_taskbus_value_error() -> None:
    error = ConfigError("bus.send_hwm", 0, "an integer from 1 to 10000000")
    assert isinstance(error, TaskbusError)
    assert isinstance(error, ValueError)


# ---------------------------------------------------------------- AclRule

GOOD_RULE: dict[str, Any] = {
    "identity": "scheduler",
    "action": "publish",
    "prefix": "scheduler.",
    "allow": True,
}

BAD_PREFIXES = [
    ("prefix-uppercase", "Scheduler.Task"),
    ("prefix-space", "scheduler task"),
    ("prefix-trailing-space", "scheduler.task.dispatch "),
    ("prefix-trailing-newline", "scheduler.task.dispatch\n"),
    ("prefix-double-dot", "scheduler..task"),
    ("prefix-star", "*"),
    ("prefix-too-long", "a" * 256),
]

ACL_CASES: list[Any] = [
    pytest.param("identity", "Scheduler", "bus.acl.identity", id="identity-uppercase"),
    pytest.param("identity", "", "bus.acl.identity", id="identity-empty"),
    pytest.param("identity", "a b", "bus.acl.identity", id="identity-space"),
    pytest.param("identity", "worker\n", "bus.acl.identity", id="identity-newline"),
    pytest.param("identity", "**", "bus.acl.identity", id="identity-double-star"),
    pytest.param("identity", "x" * 65, "bus.acl.identity", id="identity-too-long"),
    pytest.param("identity", 7, "bus.acl.identity", id="identity-int"),
    pytest.param("identity", None, "bus.acl.identity", id="identity-none"),
    pytest.param("action", "write", "bus.acl.action", id="action-unknown"),
    pytest.param("action", "Publish", "bus.acl.action", id="action-case"),
    pytest.param("action", None, "bus.acl.action", id="action-none"),
    pytest.param("action", ["publish"], "bus.acl.action", id="action-list"),
    pytest.param("prefix", None, "bus.acl.prefix", id="prefix-none"),
    pytest.param("prefix", 3, "bus.acl.prefix", id="prefix-int"),
    *[pytest.param("prefix", prefix, "bus.acl.prefix", id=name) for name, prefix in BAD_PREFIXES],
    pytest.param("allow", "yes", "bus.acl.allow", id="allow-string"),
    pytest.param("allow", 1, "bus.acl.allow", id="allow-int"),
    pytest.param("allow", None, "bus.acl.allow", id="allow-none"),
]


@pytest.mark.parametrize(("field", "value", "key"), ACL_CASES)
def test_bad_acl_rule_is_a_config_error_naming_the_key(field: str, value: Any, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AclRule(**{**GOOD_RULE, field: value})
    assert caught.value.key == key
    assert caught.value.value is value
    assert f"config {key}={value!r}: expected " in str(caught.value)


@pytest.mark.parametrize(
    "prefix",
    ["", "scheduler", "scheduler.", "scheduler.task.dispatch", "a_b.c-d.", "x" * 255],
)
def test_acl_prefixes_have_the_bus_prefix_syntax(prefix: str) -> None:
    """A rule takes exactly what a subscription may name, so that no rule silently never matches."""
    check_prefix(prefix)
    assert AclRule(**{**GOOD_RULE, "prefix": prefix}).prefix == prefix


@pytest.mark.parametrize("prefix", [prefix for _, prefix in BAD_PREFIXES])
def test_refused_acl_prefixes_are_refused_by_the_bus_too(prefix: str) -> None:
    with pytest.raises(EnvelopeError):
        check_prefix(prefix)


def test_acl_rule_is_frozen_and_keyword_only() -> None:
    rule = AclRule(**GOOD_RULE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rule.allow = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        AclRule("scheduler", "publish", "", True)  # type: ignore[call-arg]


def test_rule_matching_accepts_wildcards() -> None:
    rule = AclRule(identity="*", action="*", prefix="scheduler.", allow=True)
    assert rule.matches("anyone", "subscribe", "scheduler.task")
    assert not rule.matches("anyone", "publish", "schedulers")
    named = AclRule(identity="worker", action="subscribe", prefix="", allow=False)
    assert named.matches("worker", "subscribe", "anything")
    assert not named.matches("worker", "publish", "anything")
    assert not named.matches("worker2", "subscribe", "anything")


@pytest.mark.parametrize(
    ("identity", "action", "topic", "allowed"),
    [
        ("scheduler", "publish", "scheduler.task.dispatch", True),
        ("worker", "publish", "scheduler.task.dispatch", False),
        ("worker", "publish", "scheduler.task.dispatched", False),
        ("worker", "subscribe", "scheduler.task.dispatch", True),
        ("scheduler", "publish", "bus.error", False),
        ("worker", "publish", "bus.peer.up", False),
        ("worker", "subscribe", "bus.error", True),
        ("worker", "publish", "scheduler.task.created", True),
    ],
)
def test_default_acl_decides_as_documented(
    identity: str, action: str, topic: str, allowed: bool
) -> None:
    assert Acl(default_acl()).allows(identity, action, topic) is allowed


def test_no_matching_rule_denies() -> None:
    acl = Acl((AclRule(identity="alice", action="*", prefix="", allow=True),))
    assert acl.allows("alice", "publish", "x")
    assert not acl.allows("bob", "publish", "x")
