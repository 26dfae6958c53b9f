"""The task classes each category's executors run, as they announce them, and the check of a
definition against them.

An executor publishes ``scheduler.catalogue.<category>`` when it starts and whenever a new leader
publishes ``scheduler.catalogue_wanted``: its category's classes, each with its options' schema
(names, types as text, defaults; ``TaskRegistry.catalogue``). The leader keeps the latest
announcement of every executor, and ``check`` holds a create or an update to the union of its
category's: an unknown class or option, or an option of the wrong type, is refused (InvalidValue,
with a "did you mean" when a known name is close); a category no executor announced is accepted,
with a warning saying nothing was checked. An executor that stops keeps its last announcement:
the classes it ran are still the ones its category runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from store.errors import InvalidValue
from tasks.errors import OptionsError
from tasks.options import check_option
from tasks.permissions import category_of

Options = dict[str, str]  # an option's name -> its type as text


class Announcement(NamedTuple):
    """One executor's ``scheduler.catalogue.<category>``: its classes and their options."""

    category: str
    classes: dict[str, Options]


def read_announcement(topic_category: str, payload: Mapping[str, Any]) -> Announcement:
    """An announcement's payload, checked; InvalidValue naming the field that is wrong."""
    category = payload.get("category")
    if category != topic_category:
        raise InvalidValue(
            "category", f"expected {topic_category!r} (the topic's), not {category!r}"
        )
    classes = payload.get("classes")
    if not isinstance(classes, Mapping):
        raise InvalidValue("classes", "expected a map of task class -> its options")
    read: dict[str, Options] = {}
    for key, described in classes.items():
        options = described.get("options") if isinstance(described, Mapping) else None
        if not isinstance(key, str) or not isinstance(options, Mapping):
            raise InvalidValue(f"classes.{key}", "expected a map with an 'options' map")
        read[key] = {}
        for name, option in options.items():
            kind = option.get("type") if isinstance(option, Mapping) else None
            if not isinstance(name, str) or not isinstance(kind, str):
                raise InvalidValue(f"classes.{key}.{name}", "expected a map with a 'type' text")
            read[key][name] = kind
    return Announcement(category, read)


class Catalogue:
    """The latest announcement of each executor, by category."""

    def __init__(self) -> None:
        self._by_category: dict[str, dict[str, dict[str, Options]]] = {}

    def learn(self, executor: str, announcement: Announcement) -> None:
        self._by_category.setdefault(announcement.category, {})[executor] = announcement.classes

    def categories(self) -> list[str]:
        return sorted(self._by_category)

    def classes(self, category: str) -> dict[str, Options] | None:
        """Every class the category's executors announced (None: none announced)."""
        announced = self._by_category.get(category)
        if announced is None:
            return None
        merged: dict[str, Options] = {}
        for classes in announced.values():
            for key, options in classes.items():
                merged.setdefault(key, {}).update(options)
        return merged

    def check(self, task_id: str, task_class: str, config: Mapping[str, Any]) -> list[str]:
        """The warnings of a definition the category's executors could run; InvalidValue if they
        could not (an unknown class, an unknown option, an option of the wrong type)."""
        category = category_of(task_id)
        classes = self.classes(category)
        if classes is None:
            return [
                f"no executor of category {category!r} is up: "
                "the class and its options are not checked"
            ]
        options = classes.get(task_class)
        if options is None:
            raise InvalidValue(
                "task_class",
                f"{task_class!r} is not a task class of the {category!r} executors"
                + _hint(task_class, classes, "task classes", "they announced none"),
            )
        for name, value in config.items():
            kind = options.get(name)
            if kind is None:
                raise InvalidValue(
                    f"config.{name}",
                    f"{task_class} has no option {name!r}"
                    + _hint(name, options, "options", "it takes none"),
                )
            try:
                check_option(kind, f"config.{name}", value)
            except OptionsError as error:
                raise InvalidValue(
                    error.key, f"{error.problem} (option {name!r} of {task_class} is {kind})"
                ) from None
        return []


def _hint(name: str, known: Iterable[str], what: str, none: str) -> str:
    """``; did you mean 'x'?`` when a known name is close, else the known names, or ``none``."""
    names = sorted(known)
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    if not names:
        return f"; {none}"
    shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
    return f"; known {what}: {shown}"
