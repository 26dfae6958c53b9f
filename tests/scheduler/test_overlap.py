"""The overlap and concurrency books (scheduler.overlap): each overlap rule, what a takeover's
recovery and a run's later attempts do, and the limits per category, in total and per key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.overlap import BUFFER_FULL, Ask, Limits, OverlapBook, SlotBook
from scheduler.policies import OverlapRule

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def at(minute: int) -> datetime:
    return T0 + timedelta(minutes=minute)


def ask(
    minute: int,
    rule: OverlapRule = "skip",
    *,
    task: str = "user.a",
    attempt: int = 1,
    owed: str = "",
    category: str = "user",
    key: str | None = None,
    key_limit: int = 1,
) -> Ask[str]:
    execution = f"{task}@{minute}#{attempt}"
    return Ask(
        item=execution,
        task_id=task,
        instant=at(minute),
        execution_id=execution,
        rule=rule,
        continued=attempt > 1,
        owed=owed,
        category=category,
        key=key,
        key_limit=key_limit,
    )


# ------------------------------------------------------------------ overlap


def test_skip_skips_a_fire_while_a_run_is_in_progress_and_names_the_run() -> None:
    book: OverlapBook[str] = OverlapBook()
    assert book.decide(ask(0)).action == "go"
    verdict = book.decide(ask(1))
    assert verdict.action == "skip"
    assert verdict.reason == f"overlap: skipped, run {at(0).isoformat()} still running"
    assert book.attempt_ended("user.a", at(0), final=True) == []
    assert book.decide(ask(2)).action == "go"  # nothing in progress any more


def test_a_run_is_in_progress_until_its_final_result_and_its_attempts_never_overlap_it() -> None:
    book: OverlapBook[str] = OverlapBook()
    assert book.decide(ask(0)).action == "go"
    book.attempt_ended("user.a", at(0), final=False)  # failed, a retry pending (or suspended)
    assert book.in_progress("user.a") == [at(0)]
    assert book.idle("user.a") == [at(0)]
    assert book.decide(ask(1)).action == "skip"
    assert book.decide(ask(0, attempt=2)).action == "go"  # the retry of the run in progress
    assert book.idle("user.a") == []
    book.attempt_ended("user.a", at(0), final=True)
    assert book.in_progress("user.a") == []


def test_buffer_one_holds_one_fire_and_skips_the_later_ones() -> None:
    book: OverlapBook[str] = OverlapBook()
    book.decide(ask(0, "buffer_one"))
    assert book.decide(ask(1, "buffer_one")).action == "hold"
    later = book.decide(ask(2, "buffer_one"))
    assert (later.action, later.reason) == ("skip", BUFFER_FULL)
    (released,) = book.attempt_ended("user.a", at(0), final=True)
    assert released.instant == at(1)
    assert book.in_progress("user.a") == [at(1)]  # the buffered fire now runs
    assert book.attempt_ended("user.a", at(1), final=True) == []


def test_buffer_all_holds_every_fire_and_releases_them_one_run_at_a_time_in_order() -> None:
    book: OverlapBook[str] = OverlapBook()
    book.decide(ask(0, "buffer_all"))
    for minute in (1, 2, 3):
        assert book.decide(ask(minute, "buffer_all")).action == "hold"
    order = []
    for minute in (0, 1, 2):
        (released,) = book.attempt_ended("user.a", at(minute), final=True)
        order.append(released.instant)
    assert order == [at(1), at(2), at(3)]
    assert book.held() == 0


def test_cancel_other_cancels_the_run_in_progress_and_the_newest_fire_waits() -> None:
    book: OverlapBook[str] = OverlapBook()
    book.decide(ask(0, "cancel_other"))
    first = book.decide(ask(1, "cancel_other"))
    assert (first.action, first.cancel) == ("cancel", (at(0),))
    second = book.decide(ask(2, "cancel_other"))  # the run is being cancelled already
    assert second.action == "cancel"
    assert second.cancel == ()
    assert [a.instant for a in second.dropped] == [at(1)]  # superseded: skipped by the caller
    (released,) = book.attempt_ended("user.a", at(0), final=True)
    assert released.instant == at(2)


def test_allow_all_lets_every_fire_go() -> None:
    book: OverlapBook[str] = OverlapBook()
    assert [book.decide(ask(m, "allow_all")).action for m in range(3)] == ["go"] * 3
    assert book.in_progress("user.a") == [at(0), at(1), at(2)]


@pytest.mark.parametrize("rule", ["skip", "buffer_one", "cancel_other"])
@pytest.mark.parametrize("owed", ["dispatched again", "a catch-up"])
def test_a_recovered_or_caught_up_fire_is_held_behind_the_oldest_whatever_the_rule(
    rule: OverlapRule, owed: str
) -> None:
    book: OverlapBook[str] = OverlapBook()
    assert book.decide(ask(0, rule, owed=owed)).action == "go"
    held = book.decide(ask(1, rule, owed=owed))
    assert held.action == "hold"
    assert held.reason == f"overlap: {owed}, held while run {at(0).isoformat()} is in progress"
    assert book.decide(ask(2, rule, owed=owed)).action == "hold"
    (released,) = book.attempt_ended("user.a", at(0), final=True)
    assert released.instant == at(1)


def test_an_attempt_of_a_run_the_book_does_not_know_waits_for_the_run_in_progress() -> None:
    book: OverlapBook[str] = OverlapBook()
    book.decide(ask(5))
    verdict = book.decide(ask(0, attempt=3))  # a wake of a run suspended before a takeover
    assert verdict.action == "hold"
    (released,) = book.attempt_ended("user.a", at(5), final=True)
    assert released.instant == at(0)


def test_tasks_are_independent_and_a_forgotten_run_releases_its_held_fire() -> None:
    book: OverlapBook[str] = OverlapBook()
    book.decide(ask(0, "buffer_all"))
    assert book.decide(ask(0, "buffer_all", task="user.b")).action == "go"
    book.decide(ask(1, "buffer_all"))
    book.attempt_ended("user.a", at(0), final=False)  # suspended, then cancelled unseen
    (released,) = book.forget("user.a", at(0))
    assert released.instant == at(1)
    assert book.in_progress("user.b") == [at(0)]


def test_the_sweep_sees_the_latest_attempt_of_each_run_out() -> None:
    book: OverlapBook[str] = OverlapBook()
    book.decide(ask(0))
    book.decide(ask(0, attempt=2))
    assert book.out_attempts() == {"user.a@0#2": ("user.a", at(0))}
    book.lost("user.a", at(0))
    assert book.out_attempts() == {}
    assert book.idle("user.a") == [at(0)]


# ------------------------------------------------------------------ slots


def test_the_category_limit_holds_fires_in_order_and_an_end_releases_the_oldest() -> None:
    slots: SlotBook[str] = SlotBook(Limits(categories={"user": 2}))
    assert slots.take(ask(0, task="user.a"))[0]
    assert slots.take(ask(0, task="user.b"))[0]
    went, why = slots.take(ask(0, task="user.c"))
    assert not went
    assert why == "concurrency: category user at its limit of 2 runs at once"
    slots.take(ask(0, task="user.d"))
    assert slots.waiting() == 2
    assert slots.out("user") == 2
    assert [a.task_id for a in slots.release("user.a@0#1")] == ["user.c"]
    assert slots.release("nobody") == []  # a result of an attempt not counted
    assert [a.task_id for a in slots.release("user.b@0#1")] == ["user.d"]
    assert slots.out("user") == 2
    assert slots.waiting() == 0


def test_the_total_limit_spans_categories_and_releases_the_oldest_waiting() -> None:
    slots: SlotBook[str] = SlotBook(Limits(categories={"user": 5, "agency": 5}, total=2))
    slots.take(ask(0, task="user.a"))
    slots.take(ask(0, task="agency.a", category="agency"))
    went, why = slots.take(ask(0, task="agency.b", category="agency"))
    assert not went
    assert "scheduler.max_concurrent_tasks" in why
    slots.take(ask(0, task="user.b"))
    (first,) = slots.release("user.a@0#1")
    assert first.task_id == "agency.b"  # older than user.b
    (second,) = slots.release("agency.a@0#1")
    assert second.task_id == "user.b"


def test_a_full_category_does_not_hold_back_another() -> None:
    slots: SlotBook[str] = SlotBook(Limits(categories={"user": 1, "agency": 1}))
    slots.take(ask(0, task="user.a"))
    assert not slots.take(ask(0, task="user.b"))[0]
    assert slots.take(ask(0, task="agency.a", category="agency"))[0]


def test_a_key_limit_holds_runs_of_one_key_across_tasks_and_not_other_keys() -> None:
    slots: SlotBook[str] = SlotBook(Limits())
    alice = 'user_id="alice"'
    assert slots.take(ask(0, task="user.a", key=alice, key_limit=1))[0]
    went, why = slots.take(ask(0, task="user.b", key=alice, key_limit=1))
    assert not went
    assert why == f"concurrency: key {alice} at its limit of 1 runs at once"
    assert slots.take(ask(0, task="user.c", key='user_id="bob"', key_limit=1))[0]
    assert slots.out(key=alice) == 1
    (released,) = slots.release("user.a@0#1")
    assert released.task_id == "user.b"
    assert slots.out(key=alice) == 1


def test_a_key_waiting_fire_does_not_block_its_category() -> None:
    slots: SlotBook[str] = SlotBook(Limits(categories={"user": 3}))
    slots.take(ask(0, task="user.a", key="k=1"))
    assert not slots.take(ask(0, task="user.b", key="k=1"))[0]
    assert slots.take(ask(0, task="user.c"))[0]  # later, other key: goes


def test_a_fire_past_its_key_waits_for_its_category_in_order_of_arrival() -> None:
    slots: SlotBook[str] = SlotBook(Limits(categories={"user": 1}))
    slots.take(ask(0, task="user.a", key="k=1"))
    slots.take(ask(0, task="user.b", key="k=1"))  # waits for the key
    slots.take(ask(0, task="user.c"))  # waits for the category
    (first,) = slots.release("user.a@0#1")
    assert first.task_id == "user.b"  # past its key, and first in: in order of arrival
    assert slots.out(key="k=1") == 1
    (second,) = slots.release("user.b@0#1")
    assert second.task_id == "user.c"


def test_an_attempt_dispatched_again_while_out_keeps_its_one_slot() -> None:
    slots: SlotBook[str] = SlotBook(Limits(categories={"user": 1}))
    assert slots.take(ask(0))[0]
    assert slots.take(ask(0))[0]
    assert len(slots) == 1
    assert slots.out_ids() == ["user.a@0#1"]


def test_no_limit_counts_nothing() -> None:
    slots: SlotBook[str] = SlotBook(Limits())
    assert not slots.needed(ask(0))
    assert slots.needed(ask(0, key="k=1"))
