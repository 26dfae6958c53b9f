"""BusSettings and AclRule refuse bad values at construction, naming key, value and expectation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
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
    ("prefix-placeholder-inside-a-word", "scheduler.task.x{identity}"),
    ("prefix-placeholder-not-last", "scheduler.{identity}.status"),
]

ACL_CASES: list[Any] = [
    pytest.param("identity", "Scheduler", "bus.acl.identity", id="identity-uppercase"),
    pytest.param("identity", "", "bus.acl.identity", id="identity-empty"),
    pytest.param("identity", "a b", "bus.acl.identity", id="identity-space"),
    pytest.param("identity", "worker\n", "bus.acl.identity", id="identity-newline"),
    pytest.param("identity", "@Admin", "bus.acl.identity", id="identity-role-uppercase"),
    pytest.param("identity", "@", "bus.acl.identity", id="identity-role-unnamed"),
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


def test_rule_matching_accepts_wildcards_globs_and_roles() -> None:
    rules = (
        AclRule(identity="@worker", action="ask", prefix="jobs.", allow=True),
        AclRule(identity="probe-*", action="*", prefix="probe.", allow=True),
        AclRule(identity="*", action="receive", prefix="inbox.{identity}", allow=True),
        AclRule(identity="*", action="*", prefix="scheduler.", allow=True),
    )
    acl = Acl(rules, {"worker": ("worker", "@helpers"), "helpers": ("helper-*",)})
    assert acl.allows("anyone", "subscribe", "scheduler.task")
    assert not acl.allows("anyone", "publish", "schedulers")
    assert acl.allows("worker", "ask", "jobs.build")
    assert acl.allows("helper-7", "ask", "jobs.build")  # through a role inside the role
    assert not acl.allows("worker", "publish", "jobs.build")
    assert not acl.allows("worker2", "ask", "jobs.build")
    assert acl.allows("probe-a", "consume", "probe.q")
    assert not acl.allows("probe", "consume", "probe.q")
    assert acl.allows("bob", "receive", "inbox.bob")
    assert not acl.allows("bob", "receive", "inbox.bobby")  # exactly its own, not a prefix
    assert not acl.allows("bob", "receive", "inbox.bob.x")
    assert not acl.allows("bob", "receive", "inbox.alice")
    assert acl.roles.of("helper-1") == ["helpers", "worker"]


@pytest.mark.parametrize(
    ("identity", "action", "topic", "allowed"),
    [
        # work: only schedulers dispatch and take results, only executors take dispatches
        ("scheduler", "enqueue", "scheduler.task.dispatch.user", True),
        ("scheduler-b", "enqueue", "scheduler.task.dispatch.user", True),
        ("worker", "enqueue", "scheduler.task.dispatch.user", False),
        ("worker", "consume", "scheduler.task.dispatch.user", False),
        ("executor-user", "consume", "scheduler.task.dispatch.user", True),
        ("executor-user", "enqueue", "scheduler.task.result", True),
        ("worker", "enqueue", "scheduler.task.result", False),
        ("worker", "consume", "scheduler.task.result", False),
        ("scheduler", "consume", "scheduler.task.result", True),
        # the store: asked by schedulers, in part by executors, served by the store
        ("worker", "ask", "store.task.delete", False),
        ("worker", "ask", "store.retention.run", False),
        ("worker", "ask", "store.lease.acquire", False),
        ("worker", "serve", "store.", False),
        ("cli", "ask", "store.task.delete", False),
        ("cli", "ask", "store.lease.acquire", False),
        ("cli", "ask", "store.maintenance.integrity_check", True),
        ("cli", "ask", "store.execution.history", True),
        ("scheduler", "ask", "store.lease.acquire", True),
        ("executor-user", "ask", "store.execution.finish_many", True),
        ("executor-user", "ask", "store.lease.acquire", False),
        ("executor-user", "ask", "store.task.put", False),
        ("store", "serve", "store.", True),
        # the broker's own topics
        ("scheduler", "publish", "bus.error", False),
        ("cli", "publish", "bus.peer.up", False),
        ("worker", "subscribe", "bus.error", False),
        ("cli", "subscribe", "bus.error", True),
        ("cli", "ask", "bus.peers", True),
        ("executor-user", "ask", "bus.stats", True),
        ("worker", "ask", "bus.stats", False),
        # nobody but the scheduler and health answers for them, or speaks for them
        ("worker", "serve", "scheduler.task.create", False),
        ("worker", "serve", "scheduler.health", False),
        ("health", "serve", "scheduler.health", True),
        ("scheduler", "serve", "scheduler.task.create", True),
        ("worker", "publish", "scheduler.task.status.worker", False),
        ("worker", "publish", "scheduler.health", False),
        ("worker", "publish", "actors.liveness", False),
        ("system", "publish", "actors.liveness", True),
        ("executor-user", "publish", "scheduler.task.status.bob", True),
        # the public API
        ("worker", "ask", "scheduler.task.create", True),
        ("worker", "ask", "scheduler.health", True),
        ("worker", "ask", "scheduler.stats", False),
        ("cli", "ask", "scheduler.stats", True),
        ("worker", "subscribe", "scheduler.task.status", True),
        ("worker", "receive", "scheduler.task.status.worker", True),
        ("worker", "receive", "scheduler.task.status.alice", False),
        ("worker", "receive", "scheduler.task.dead.alice", False),
        ("worker", "receive", "scheduler.error", False),
        ("cli", "receive", "scheduler.task.status.alice", True),
        ("worker", "receive", "scheduler.health", True),
        ("worker", "ask", "scheduler.run.tree", True),
        ("worker", "ask", "scheduler.run.query", True),
        # the scheduler's internal asks: executors (and admins) only
        ("executor-user", "ask", "scheduler.exec.spawn", True),
        ("executor-user", "ask", "scheduler.exec.answer", True),
        ("worker", "ask", "scheduler.exec.spawn", False),
        ("worker", "ask", "scheduler.exec.answer", False),
        ("scheduler", "ask", "scheduler.exec.spawn", False),
        ("cli", "ask", "scheduler.exec.answer", True),
        ("executor-user", "ask", "store.run.stranded", True),
        ("worker", "ask", "store.run.children", False),
        # everything else is the applications'
        ("worker", "publish", "user.reminder", True),
        ("worker", "serve", "greeter.", True),
    ],
)
def test_default_acl_decides_as_documented(
    identity: str, action: str, topic: str, allowed: bool
) -> None:
    settings = BusSettings()
    assert Acl(settings.acl, settings.roles).allows(identity, action, topic) is allowed


@pytest.mark.parametrize(
    ("roles", "key", "expected"),
    [
        ({"admin": ("@ops",)}, "bus.roles.admin", "a role defined in [bus.roles]"),
        ({"a": ("@b",), "b": ("@a",)}, "bus.roles.a", "no role inside itself (@a -> @b -> @a)"),
        ({"Admin": ("cli",)}, "bus.roles.Admin", "a role name"),
        ({"admin": ("*",)}, "bus.roles.admin", "an array of identity names"),
        ({"admin": "cli"}, "bus.roles.admin", "an array of identity names"),
    ],
)
def test_bad_roles_are_config_errors_naming_the_role(
    roles: dict[str, Any], key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        BusSettings(roles=roles, acl=())
    assert caught.value.key == key
    assert expected in caught.value.expected


def test_a_rule_naming_an_undefined_role_is_refused() -> None:
    rule = AclRule(identity="@ops", action="*", prefix="", allow=True)
    with pytest.raises(ConfigError) as caught:
        BusSettings(acl=(rule,))
    assert caught.value.key == "bus.acl[0].identity"
    assert caught.value.expected.startswith("a role (admin, executor, health, internal")


def test_no_matching_rule_denies() -> None:
    acl = Acl((AclRule(identity="alice", action="*", prefix="", allow=True),))
    assert acl.allows("alice", "publish", "x")
    assert not acl.allows("bob", "publish", "x")


def test_the_security_guide_numbers_every_default_rule_once() -> None:
    """docs/security.md §6.4 numbers the default rules by position: adding one renumbers it."""
    guide = (Path(__file__).parents[2] / "docs" / "security.md").read_text(encoding="utf-8")
    table = guide.split("### 6.4 Default rules", 1)[1].split("\n\n", 2)[2].split("\n\n", 1)[0]
    numbered: list[int] = []
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1].strip()
        first, _, last = cell.partition("-")
        numbered.extend(range(int(first), int(last or first) + 1))
    assert numbered == list(range(1, len(default_acl()) + 1))
