from __future__ import annotations

from tests.conftest import ClientFactory


async def test_event_reaches_subscriber_with_stamped_sender(
    make_client: ClientFactory, transport: str
) -> None:
    listener = await make_client("listener")
    subscription = await listener.subscribe("demo.")
    talker = await make_client("talker", transport)
    await talker.publish("demo.hello", {"n": 1})
    event = await subscription.get(timeout=5)
    assert (event.topic, event.sender, event.payload) == ("demo.hello", "talker", {"n": 1})
