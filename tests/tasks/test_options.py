"""Options read strictly from a task's config map: defaults, conversions, precise refusals."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import pytest

from tasks import BaseTask, OptionsError, TaskContext, TaskOptions, TaskResult, require_option
from tasks.maintenance import LogCleanup, LogCleanupOptions


@dataclass(frozen=True)
class SyncOptions(TaskOptions):
    url: str = "https://example.org"
    retries: int = 3
    ratio: float = 0.5
    verbose: bool = False
    tags: list[str] = field(default_factory=list)
    ports: tuple[int, ...] = (80,)
    headers: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    api_token: str = ""

    def __post_init__(self) -> None:
        require_option(self.retries >= 0, "retries", "an integer >= 0")


class Sync(BaseTask):
    category: ClassVar[str] = "user"
    Options = SyncOptions

    async def execute(self, ctx: TaskContext[SyncOptions]) -> TaskResult:
        return TaskResult.ok()


def read(config: dict[str, object]) -> TaskOptions:
    return Sync.read_options(config, task_id="user.sync")


def test_an_empty_map_gives_the_defaults() -> None:
    assert read({}) == SyncOptions()
    assert LogCleanup.read_options({}) == LogCleanupOptions(
        retention_days=30.0, max_executions=1_000_000
    )


def test_values_are_converted_to_the_field_types() -> None:
    options = read(
        {
            "url": "https://x",
            "retries": 5,
            "ratio": 2,  # an int is a number
            "verbose": True,
            "tags": ("a", "b"),  # TOML arrays arrive as tuples from the settings
            "ports": [443, 8443],
            "headers": MappingProxyType(
                {"accept": "json", "nested": MappingProxyType({"k": (1,)})}
            ),
            "limit": None,
        }
    )
    assert options == SyncOptions(
        url="https://x",
        retries=5,
        ratio=2.0,
        verbose=True,
        tags=["a", "b"],
        ports=(443, 8443),
        headers={"accept": "json", "nested": {"k": [1]}},
        limit=None,
    )
    assert isinstance(options, SyncOptions)
    assert type(options.ratio) is float
    assert type(options.headers["nested"]) is dict


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"retries": "3"}, "options.retries: expected an integer, not str"),
        ({"retries": True}, "options.retries: expected an integer, not bool"),
        ({"ratio": False}, "options.ratio: expected a number, not bool"),
        ({"verbose": 1}, "options.verbose: expected true or false, not int"),
        ({"url": 1}, "options.url: expected a string, not int"),
        ({"tags": "a,b"}, "options.tags: expected a list of strings, not str"),
        ({"tags": ["a", 2]}, "options.tags[1]: expected a string, not int"),
        ({"ports": [80, 1.5]}, "options.ports[1]: expected an integer, not float"),
        ({"headers": ["a"]}, "options.headers: expected a table, not list"),
        ({"headers": {1: "a"}}, "options.headers: table keys are strings, not int"),
        ({"limit": "10"}, "options.limit: expected an integer, not str"),
    ],
)
def test_a_wrong_type_is_refused_naming_the_option(config: dict[str, object], message: str) -> None:
    with pytest.raises(OptionsError) as caught:
        read(config)
    assert str(caught.value) == f"task user.sync: {message}"
    assert caught.value.key == message.split(":", maxsplit=1)[0]


def test_an_unknown_option_is_refused_listing_the_known_ones() -> None:
    with pytest.raises(OptionsError) as caught:
        LogCleanup.read_options({"retention_dayz": 3})
    assert str(caught.value) == (
        "task maintenance.log_cleanup: options.retention_dayz: unknown option; known: "
        "ask_timeout_s, max_executions, retention_days"
    )


def test_a_task_without_options_says_so() -> None:
    class Plain(BaseTask):
        category = "user"

        async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
            return TaskResult.ok()

    with pytest.raises(OptionsError) as caught:
        Plain.read_options({"x": 1}, task_id="user.plain")
    assert str(caught.value) == (
        "task user.plain: options.x: unknown option; known: none: this task takes no options"
    )


def test_range_checks_of_the_options_class_name_the_option_and_the_task() -> None:
    with pytest.raises(OptionsError) as caught:
        LogCleanup.read_options({"retention_days": 0})
    assert str(caught.value) == (
        "task maintenance.log_cleanup: options.retention_days: expected days in (0, 36500]"
    )
    with pytest.raises(OptionsError, match=r"^task user.sync: options.retries: expected an"):
        read({"retries": -1})


def test_values_are_never_shown_they_may_be_secrets() -> None:
    with pytest.raises(OptionsError) as caught:
        read({"api_token": ["hunter2"]})
    assert "hunter2" not in str(caught.value)
    assert str(caught.value) == "task user.sync: options.api_token: expected a string, not list"


def test_the_config_must_be_a_map() -> None:
    with pytest.raises(
        OptionsError, match=r"^task user.sync: options: expected a table, not list$"
    ):
        read(["retries"])  # type: ignore[arg-type]
