"""The scheduler lease: one holder at a time, expiry by the clock passed in, fencing tokens that
only grow, and writes stamped with a stale token refused.
"""

from __future__ import annotations

import pytest

from store import Fence, InvalidValue, LeaseLost, LibsqlStore, NewExecution
from tests.store.conftest import at

TTL = 30.0


async def test_a_free_lease_is_granted_and_then_held_against_others(store: LibsqlStore) -> None:
    mine = await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(0))
    assert mine.granted
    assert (mine.lease.holder, mine.lease.token, mine.lease.expires_at) == ("host-a", 1, at(30))
    theirs = await store.acquire_lease("scheduler", "host-b", ttl_s=TTL, now=at(29.999))
    assert not theirs.granted
    assert theirs.lease == mine.lease


async def test_re_acquiring_one_s_own_lease_extends_it_with_the_same_token(
    store: LibsqlStore,
) -> None:
    await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(0))
    again = await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(10))
    assert again.granted
    assert (again.lease.token, again.lease.expires_at) == (1, at(40))


async def test_an_expired_lease_goes_to_the_next_holder_with_a_larger_token(
    store: LibsqlStore,
) -> None:
    await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(0))
    taken = await store.acquire_lease("scheduler", "host-b", ttl_s=TTL, now=at(30))
    assert taken.granted
    assert (taken.lease.holder, taken.lease.token) == ("host-b", 2)
    with pytest.raises(LeaseLost, match="token 1 of 'host-a' is no longer current"):
        await store.renew_lease("scheduler", "host-a", 1, ttl_s=TTL, now=at(31))
    back = await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(60))
    assert (back.lease.holder, back.lease.token) == ("host-a", 3)


async def test_renewing_extends_a_live_lease_and_fails_once_it_expired(store: LibsqlStore) -> None:
    await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(0))
    renewed = await store.renew_lease("scheduler", "host-a", 1, ttl_s=TTL, now=at(20))
    assert (renewed.token, renewed.expires_at) == (1, at(50))
    with pytest.raises(LeaseLost, match="expired at 2024-05-01T12:00:50"):
        await store.renew_lease("scheduler", "host-a", 1, ttl_s=TTL, now=at(50))
    with pytest.raises(LeaseLost, match="was never granted"):
        await store.renew_lease("other", "host-a", 1, ttl_s=TTL, now=at(0))


async def test_release_frees_the_lease_at_once_and_only_for_its_holder(
    store: LibsqlStore,
) -> None:
    await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(0))
    assert not await store.release_lease("scheduler", "host-b", 1, now=at(1))
    assert not await store.release_lease("scheduler", "host-a", 2, now=at(1))
    assert await store.release_lease("scheduler", "host-a", 1, now=at(1))
    assert not await store.release_lease("scheduler", "host-a", 1, now=at(2))
    taken = await store.acquire_lease("scheduler", "host-b", ttl_s=TTL, now=at(2))
    assert (taken.granted, taken.lease.token) == (True, 2)


async def test_a_write_with_a_stale_fencing_token_is_refused_and_not_written(
    store: LibsqlStore,
) -> None:
    old = await store.acquire_lease("scheduler", "host-a", ttl_s=TTL, now=at(0))
    fire = NewExecution(task_id="t.f", scheduled_at=at(0), started_at=at(0))
    fence = Fence("scheduler", old.lease.token)
    await store.record_execution(fire, fence=fence)  # current token: accepted

    await store.acquire_lease("scheduler", "host-b", ttl_s=TTL, now=at(31))  # token 2
    late = NewExecution(task_id="t.f", scheduled_at=at(60), started_at=at(60))
    with pytest.raises(LeaseLost, match="lease 'scheduler' token 1 is stale \\(now at token 2\\)"):
        await store.record_execution(late, fence=fence)
    with pytest.raises(LeaseLost, match="never granted"):
        await store.record_execution(late, fence=Fence("nobody", 1))
    assert len((await store.history("t.f")).items) == 1
    await store.record_execution(late, fence=Fence("scheduler", 2))
    assert len((await store.history("t.f")).items) == 2


@pytest.mark.parametrize(
    ("ttl_s", "token", "field"),
    [(0.0, 1, "ttl_s"), (-5.0, 1, "ttl_s"), (float("nan"), 1, "ttl_s"), (30.0, 0, "token")],
)
async def test_out_of_domain_lease_arguments_are_refused_by_name(
    store: LibsqlStore, ttl_s: float, token: int, field: str
) -> None:
    with pytest.raises(InvalidValue) as caught:
        await store.renew_lease("scheduler", "host-a", token, ttl_s=ttl_s, now=at(0))
    assert caught.value.field == field
