"""What an executor announces of its classes: each option's type as text and its default, read
back by the scheduler's check (``check_option``), and the registry's catalogue of a category."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from actors.scheduling.catalogue import Announcement, Catalogue, read_announcement
from store.errors import InvalidValue
from tasks import TaskRegistry
from tasks.errors import OptionsError
from tasks.options import TaskOptions, check_option, option_schema


@dataclass(frozen=True)
class Every(TaskOptions):
    name: str = "x"
    count: int = 3
    ratio: float = 0.5
    loud: bool = False
    tags: list[str] = field(default_factory=lambda: ["a"])
    sizes: tuple[int, ...] = (1, 2)
    extra: dict[str, object] = field(default_factory=dict)
    limit: int | None = None


def test_the_schema_names_each_type_as_text_with_its_default() -> None:
    assert option_schema(Every) == {
        "name": {"type": "str", "default": "x"},
        "count": {"type": "int", "default": 3},
        "ratio": {"type": "float", "default": 0.5},
        "loud": {"type": "bool", "default": False},
        "tags": {"type": "list[str]", "default": ["a"]},
        "sizes": {"type": "tuple[int, ...]", "default": [1, 2]},
        "extra": {"type": "dict", "default": {}},
        "limit": {"type": "int | None", "default": None},
    }


@pytest.mark.parametrize(
    ("kind", "good", "bad", "problem"),
    [
        ("str", "a", 1, "expected a string, not int"),
        ("int", 1, True, "expected an integer, not bool"),
        ("float", 1, "1", "expected a number, not str"),
        ("bool", True, 0, "expected true or false, not int"),
        ("list[str]", ["a"], "a", "expected a list of strings, not str"),
        ("tuple[int, ...]", [1], [1, "2"], "expected an integer, not str"),
        ("dict", {"a": 1}, [1], "expected a table, not list"),
        ("int | None", None, 1.5, "expected an integer, not float"),
    ],
)
def test_a_type_read_back_checks_values(kind: str, good: object, bad: object, problem: str) -> None:
    check_option(kind, "config.x", good)
    with pytest.raises(OptionsError) as caught:
        check_option(kind, "config.x", bad)
    assert caught.value.problem == problem


def test_a_type_not_understood_checks_nothing() -> None:
    check_option("set[str]", "config.x", 42)  # announced by a newer executor


def test_the_registry_announces_its_category_s_classes_only() -> None:
    registry = TaskRegistry.with_builtins()
    user = registry.catalogue("user")
    assert user == {
        "tasks.reminders:Reminder": {
            "options": {
                "message": {"type": "str", "default": ""},
                "topic": {"type": "str", "default": "user.reminder"},
            }
        }
    }
    assert "tasks.maintenance:LogCleanup" in registry.catalogue("maintenance")
    assert registry.catalogue("nobody") == {}


def test_the_catalogue_checks_against_every_executor_of_the_category() -> None:
    catalogue = Catalogue()
    catalogue.learn("executor-a", Announcement("user", {"m:One": {"steps": "int"}}))
    catalogue.learn("executor-b", Announcement("user", {"m:Two": {}}))
    assert catalogue.check("user.x", "m:One", {"steps": 2}) == []
    assert catalogue.check("user.x", "m:Two", {}) == []
    with pytest.raises(InvalidValue) as caught:
        catalogue.check("user.x", "m:Two", {"steps": 2})
    assert str(caught.value) == "config.steps: m:Two has no option 'steps'; it takes none"
    with pytest.raises(InvalidValue) as caught:
        catalogue.check("user.x", "zzz", {})
    assert str(caught.value) == (
        "task_class: 'zzz' is not a task class of the 'user' executors; "
        "known task classes: m:One, m:Two"
    )
    assert catalogue.check("agency.x", "zzz", {"a": 1}) == [
        "no executor of category 'agency' is up: the class and its options are not checked"
    ]


def test_an_announcement_that_cannot_be_read_is_refused() -> None:
    good = {"category": "user", "classes": {"m:One": {"options": {"n": {"type": "int"}}}}}
    assert read_announcement("user", good) == Announcement("user", {"m:One": {"n": "int"}})
    with pytest.raises(InvalidValue, match=r"^category: expected 'user'"):
        read_announcement("user", {**good, "category": "agency"})
    with pytest.raises(InvalidValue, match=r"^classes: "):
        read_announcement("user", {"category": "user", "classes": []})
    with pytest.raises(InvalidValue, match=r"^classes\.m:One\.n: "):
        read_announcement("user", {"category": "user", "classes": {"m:One": {"options": {"n": 1}}}})
