"""FireQueue: ordering, moving and removing tasks, and a large queue against a plain model."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from scheduler.errors import ScheduleError
from scheduler.timing import FireQueue

from .fakes import at


def drain(queue: FireQueue) -> list[tuple[str, datetime]]:
    return queue.pop_due(at(24 * 365 * 10))


def test_fires_come_out_by_due_instant_then_in_scheduling_order() -> None:
    queue = FireQueue()
    queue.schedule("c", at(3))
    queue.schedule("a", at(1))
    queue.schedule("b2", at(2))
    queue.schedule("b1", at(2))
    assert len(queue) == 4
    assert queue.next_due() == ("a", at(1))
    assert drain(queue) == [("a", at(1)), ("b2", at(2)), ("b1", at(2)), ("c", at(3))]
    assert len(queue) == 0
    assert queue.next_due() is None


def test_pop_due_takes_only_what_is_due() -> None:
    queue = FireQueue()
    for hour in (1, 2, 3):
        queue.schedule(f"t{hour}", at(hour))
    assert queue.pop_due(at(0, 59)) == []
    assert queue.pop_due(at(2)) == [("t1", at(1)), ("t2", at(2))]
    assert "t1" not in queue
    assert "t3" in queue
    assert queue.due_of("t3") == at(3)
    assert queue.due_of("t1") is None


def test_delay_until_next() -> None:
    queue = FireQueue()
    assert queue.delay_until_next(at(0)) is None
    queue.schedule("a", at(1))
    assert queue.delay_until_next(at(0, 59, 30)) == 30.0
    assert queue.delay_until_next(at(2)) == 0.0  # overdue: no negative sleep


def test_scheduling_again_moves_the_fire_earlier_or_later() -> None:
    queue = FireQueue()
    queue.schedule("a", at(1))
    queue.schedule("b", at(2))
    queue.schedule("a", at(3))
    assert queue.next_due() == ("b", at(2))
    assert queue.due_of("a") == at(3)
    queue.schedule("a", at(0, 30))
    assert queue.next_due() == ("a", at(0, 30))
    assert len(queue) == 2
    assert drain(queue) == [("a", at(0, 30)), ("b", at(2))]


def test_removed_tasks_never_come_out() -> None:
    queue = FireQueue()
    queue.schedule("a", at(1))
    queue.schedule("b", at(2))
    assert queue.remove("a") is True
    assert queue.remove("a") is False
    assert queue.remove("never") is False
    assert queue.next_due() == ("b", at(2))
    assert queue.delay_until_next(at(0)) == 7200.0
    queue.schedule("a", at(5))  # back again, later
    assert drain(queue) == [("b", at(2)), ("a", at(5))]


def test_instants_are_utc_and_naive_ones_are_refused() -> None:
    queue = FireQueue()
    queue.schedule("a", at(1).astimezone(timezone(timedelta(hours=-5))))
    assert queue.due_of("a") == at(1)
    assert queue.due_of("a").utcoffset() == timedelta(0)  # type: ignore[union-attr]
    with pytest.raises(ScheduleError, match="naive"):
        queue.schedule("b", datetime(2025, 1, 1))
    with pytest.raises(ScheduleError, match="naive"):
        queue.pop_due(datetime(2025, 1, 1))


def test_a_hundred_thousand_tasks_match_a_plain_model() -> None:
    rng = random.Random(4)
    queue = FireQueue()
    model: dict[str, datetime] = {}
    ids = [f"user.t{i}" for i in range(100_000)]
    for task_id in ids:
        due = at(seconds=rng.randrange(86_400))
        queue.schedule(task_id, due)
        model[task_id] = due
    for task_id in rng.sample(ids, 50_000):  # move half of them
        due = at(seconds=rng.randrange(86_400))
        queue.schedule(task_id, due)
        model[task_id] = due
    for task_id in rng.sample(ids, 10_000):
        assert queue.remove(task_id) is (task_id in model)
        model.pop(task_id, None)
    assert len(queue) == len(model)

    popped: list[tuple[str, datetime]] = []
    for hour in range(1, 25):  # one hour at a time, as a day passes
        batch = queue.pop_due(at(hour))
        assert all(due <= at(hour) for _, due in batch)
        head = queue.next_due()
        assert head is None or head[1] > at(hour)
        popped.extend(batch)
    assert [due for _, due in popped] == sorted(due for _, due in popped)
    assert dict(popped) == model
    assert len(popped) == len(model)
    assert len(queue) == 0


def test_stale_entries_do_not_pile_up() -> None:
    queue = FireQueue()
    for i in range(100):
        queue.schedule(f"t{i}", at(1))
    for i in range(50_000):
        queue.schedule("t0", at(seconds=i))
    assert len(queue._heap) <= 2 * 1024  # compacted, not 50 100 entries
    for i in range(100):
        queue.remove(f"t{i}")
        queue.schedule(f"t{i}", at(2))
        queue.remove(f"t{i}")
    assert len(queue) == 0
    assert queue.next_due() is None
    assert len(queue._heap) == 0
