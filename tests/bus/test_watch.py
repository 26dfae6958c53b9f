"""Events nobody listens to are not sent (``BusClient.watch``), and that loses nothing anyone
could have received: a subscriber gets every event its own later messages cause, and a broker
that forgot the publisher is asked again (until it answers, everything is sent)."""

from __future__ import annotations

import asyncio

import pytest

from bus import BusClient, Envelope
from config import BusSettings
from tests.bus.waits import eventually
from tests.conftest import OPEN_ACL, ClientFactory


@pytest.fixture
def settings() -> BusSettings:
    return BusSettings(
        heartbeat_interval_s=0.1, heartbeat_liveness=30, ask_timeout_s=3.0, acl=OPEN_ACL
    )


def _counter(client: BusClient, name: str) -> int:
    return int(client.stats()["counters"].get(name, 0))


async def _publishing_on_request(publisher: BusClient) -> asyncio.Task[None]:
    """``cmd.publish`` requests make ``publisher`` publish ``quiet.tick`` with the request's
    ``n``, then answer: what a subscriber asks for is caused by its own message."""
    inbox = await publisher.serve("cmd.")

    async def serve() -> None:
        while True:
            request: Envelope = await inbox.get()
            await publisher.publish("quiet.tick", {"n": request.payload["n"]})
            publisher.reply(request, {})

    return asyncio.create_task(serve())


async def test_an_unheard_event_is_not_sent_and_a_subscriber_gets_what_it_causes(
    make_client: ClientFactory, transport: str
) -> None:
    publisher = await make_client("publisher", transport)
    await publisher.watch("quiet.")
    server = await _publishing_on_request(publisher)
    try:
        await publisher.publish("quiet.tick", {"n": 0})
        await publisher.publish("loud.tick", {"n": 0})  # not watched: sent as ever
        assert _counter(publisher, "unheard") == 1
        assert _counter(publisher, "published") == 1

        listener = await make_client("listener", "inproc")
        ticks = await listener.subscribe("quiet.")
        await listener.ask("cmd.publish", {"n": 1})  # sent once the subscription is acknowledged
        event = await ticks.get(timeout=5)
        assert (event.topic, event.payload, event.sender) == ("quiet.tick", {"n": 1}, "publisher")
        assert _counter(publisher, "unheard") == 1

        await listener.unsubscribe(ticks)

        async def unheard_again() -> bool:
            await publisher.publish("quiet.tick", {"n": 2})
            return _counter(publisher, "unheard") > 1

        await eventually(unheard_again, "the publisher learns nobody listens any more", 5)
    finally:
        server.cancel()


async def test_a_subscriber_that_goes_away_is_no_longer_listened_for(
    make_client: ClientFactory,
) -> None:
    publisher = await make_client("publisher")
    await publisher.watch("quiet.")
    listener = await make_client("listener")
    await listener.subscribe("quiet.")
    await eventually(lambda: publisher.watched["quiet."] is True, "the publisher learns", 5)
    await listener.stop()
    await eventually(lambda: publisher.watched["quiet."] is False, "the publisher unlearns", 5)


async def test_a_wider_or_narrower_subscription_counts_as_listening(
    make_client: ClientFactory,
) -> None:
    publisher = await make_client("publisher")
    await publisher.watch("quiet.status.")
    wide = await make_client("wide")
    await wide.subscribe("quiet.")
    await eventually(lambda: publisher.watched["quiet.status."] is True, "wide", 5)
    narrow = await make_client("narrow")
    await narrow.subscribe("quiet.status.alice")
    await wide.stop()

    async def wide_gone() -> bool:
        reply = await publisher.ask("bus.peers")
        return "wide" not in {p["identity"] for p in reply.payload["peers"]}

    # the broker dropped it; a change it caused would have reached the publisher before this
    await eventually(wide_gone, "the broker drops the wide subscriber", 5)
    assert publisher.watched["quiet.status."] is True  # the narrow one still listens
    await narrow.stop()
    await eventually(lambda: publisher.watched["quiet.status."] is False, "none", 5)


async def test_a_malformed_watch_is_refused_and_its_events_are_always_sent(
    make_client: ClientFactory,
) -> None:
    publisher = await make_client("publisher")
    with pytest.raises(Exception, match="prefix"):
        await publisher.watch("not a prefix")
    assert publisher.watched == {}
    await publisher.publish("quiet.tick")
    assert _counter(publisher, "published") == 1
