"""Actor classes declare their routes with decorators; the declarations are collected per class."""

from __future__ import annotations

import pytest

from actors import Actor, Route, on_event, on_request, on_work
from bus import Delivery, Envelope, EnvelopeError
from bus.envelope import Payload


class Base(Actor):
    name = "base"

    @on_event("base.events.")
    async def seen(self, event: Envelope) -> None: ...

    @on_request("base.ask.")
    async def answer(self, request: Envelope) -> Payload:
        return {"from": "base"}

    def helper(self) -> None:
        """Not a handler: undecorated methods are not routes."""


class Child(Base):
    name = "child"
    concurrency = 4
    max_work_attempts = 5

    @on_work("child.jobs", credit=7)
    async def job(self, delivery: Delivery) -> None: ...

    @on_request("child.ask.")  # re-declared: the subclass's pattern wins
    async def answer(self, request: Envelope) -> Payload:
        return {"from": "child"}


class Grandchild(Child):
    async def seen(self, event: Envelope) -> None:
        """Overridden without a decorator: the route stays, this override handles it."""


def by_method(cls: type[Actor]) -> dict[str, Route]:
    return {route.method: route for route in cls.routes}


def test_routes_are_collected_from_decorators() -> None:
    assert by_method(Base) == {
        "seen": Route("event", "base.events.", "seen"),
        "answer": Route("request", "base.ask.", "answer"),
    }


def test_subclasses_inherit_add_and_redeclare_routes() -> None:
    assert by_method(Child) == {
        "seen": Route("event", "base.events.", "seen"),
        "answer": Route("request", "child.ask.", "answer"),
        "job": Route("work", "child.jobs", "job", credit=7),
    }
    assert by_method(Grandchild) == by_method(Child)
    assert Grandchild.concurrency == 4
    assert Grandchild.max_work_attempts == 5
    assert by_method(Base)["answer"].pattern == "base.ask.", "the base class is untouched"


def test_an_actor_without_handlers_has_no_routes() -> None:
    class Idle(Actor):
        name = "idle"

    assert Idle.routes == ()
    assert Idle.concurrency == 1


@pytest.mark.parametrize("concurrency", [0, -1])
def test_concurrency_below_one_is_refused_at_class_creation(concurrency: int) -> None:
    with pytest.raises(ValueError, match="concurrency must be at least 1"):
        type("Broken", (Actor,), {"name": "broken", "concurrency": concurrency})


def test_work_credit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"credit for 'jobs\.x' must be at least 1"):
        on_work("jobs.x", credit=0)


@pytest.mark.parametrize(
    ("decorator", "pattern"),
    [(on_event, "Bad Prefix"), (on_request, "a..b"), (on_work, "jobs.")],
)
def test_invalid_topics_are_refused_at_declaration(decorator: object, pattern: str) -> None:
    with pytest.raises(EnvelopeError):
        decorator(pattern)  # type: ignore[operator]
