"""Methods a decorator marked on a task class (``@signal_handler``, ``@query``, ``@update``):
one scan of the class's MRO for all of them, kept per class and mark (the executor asks for
every run: a class is not re-marked once defined)."""

from __future__ import annotations

import weakref
from collections.abc import Callable

from tasks.errors import TaskDefinitionError

_SCANNED: weakref.WeakKeyDictionary[type, dict[str, dict[str, str]]] = weakref.WeakKeyDictionary()


def marked(
    cls: type, mark_of: Callable[[object], object], what: str, members: str
) -> dict[str, str]:
    """``{mark: attribute name}`` of the attributes of ``cls`` whose ``mark_of(value)`` is a str
    (a subclass's attribute overrides its base's of the same name); TaskDefinitionError, naming
    ``what`` and ``members`` (``signal`` / ``handlers``), if two attributes carry one mark.
    ``what`` names the mark: one class's scan for it is kept (a refusal is not)."""
    scanned = _SCANNED.setdefault(cls, {})
    if what not in scanned:
        scanned[what] = _scan(cls, mark_of, what, members)
    return dict(scanned[what])


def _scan(
    cls: type, mark_of: Callable[[object], object], what: str, members: str
) -> dict[str, str]:
    found: dict[str, str] = {}
    seen: set[str] = set()
    for klass in cls.__mro__:
        for attr, value in vars(klass).items():
            if attr in seen:
                continue
            seen.add(attr)
            name = mark_of(value)
            if not isinstance(name, str):
                continue
            if name in found:
                raise TaskDefinitionError(
                    f"{cls.__qualname__}: {what} {name!r} has two {members}, "
                    f"{found[name]} and {attr}"
                )
            found[name] = attr
    return found
