"""The three messaging patterns of the bus, end to end through a real broker and real sockets.

Publish/subscribe (fan-out, prefix matching, unsubscribe), ask/reply (routing, errors, timeouts,
the broker's own ``bus.*`` services) and work queues (competing consumers, credit, nack,
confirmations). The core contract of each pattern runs over inproc, tcp+CURVE and ipc+CURVE.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from bus import (
    AskTimeout,
    Broker,
    BusClient,
    BusClosed,
    Consumer,
    Delivery,
    Envelope,
    EnvelopeError,
    RemoteError,
    Subscription,
)
from config import BusSettings
from tests.bus.waits import barrier, eventually, peers
from tests.conftest import OPEN_ACL, TRANSPORTS, ClientFactory


@pytest.fixture
def settings() -> BusSettings:
    """Fast heartbeats but a generous liveness window (3 s): these tests are about routing, and a
    busy shared machine must not get a live consumer declared dead (its work would be redelivered
    and counted twice). Liveness itself is tested in ``test_liveness.py``."""
    return BusSettings(
        heartbeat_interval_s=0.1, heartbeat_liveness=30, ask_timeout_s=3.0, acl=OPEN_ACL
    )


async def until_marker(subscription: Subscription, timeout: float = 5.0) -> list[Envelope]:
    """The events of ``subscription`` before the first one whose topic ends in ``.marker``.

    Publish a marker after the events under test: once it arrives, everything the same publisher
    sent before it has arrived too (the broker keeps each publisher's order per subscriber).
    """
    seen: list[Envelope] = []
    while True:
        envelope = await subscription.get(timeout=timeout)
        if envelope.topic.endswith(".marker"):
            return seen
        seen.append(envelope)


# ---------------------------------------------------------------- publish / subscribe


async def test_fanout_every_subscriber_gets_every_event_in_order(
    make_client: ClientFactory, transport: str
) -> None:
    listeners = [await make_client(f"listener-{t}", t) for t in TRANSPORTS]
    subscriptions = [await listener.subscribe("fan.") for listener in listeners]
    publisher = await make_client("publisher", transport)

    count = 300
    for n in range(count):
        await publisher.publish("fan.tick", {"n": n})
    await publisher.publish("fan.marker")

    for listener, subscription in zip(listeners, subscriptions, strict=True):
        events = await until_marker(subscription)
        assert [e.payload["n"] for e in events] == list(range(count)), listener.identity
        assert {(e.topic, e.sender) for e in events} == {("fan.tick", "publisher")}
        assert subscription.dropped == 0


async def test_prefix_with_trailing_dot_matches_whole_words_only(
    make_client: ClientFactory, transport: str
) -> None:
    listener = await make_client("listener", transport)
    dotted = await listener.subscribe("a.b.")
    raw = await listener.subscribe("a.b")
    publisher = await make_client("publisher")

    for topic in ("a.bc", "a.b", "a.b.c", "a.b.c.d", "a.c", "b.a.b.c", "a.b.marker"):
        await publisher.publish(topic)

    assert [e.topic for e in await until_marker(dotted)] == ["a.b.c", "a.b.c.d"]
    # Without the dot the prefix is raw bytes: "a.bc" matches too (docs: subscribe with the dot).
    assert [e.topic for e in await until_marker(raw)] == ["a.bc", "a.b", "a.b.c", "a.b.c.d"]


async def test_unsubscribe_stops_delivery(make_client: ClientFactory, transport: str) -> None:
    listener = await make_client("listener", transport)
    other = await make_client("other")
    gone = await listener.subscribe("u.")
    twin = await listener.subscribe("w.")
    kept = await listener.subscribe("w.")
    control = await listener.subscribe("v.")
    others = await other.subscribe("u.")
    publisher = await make_client("publisher")

    await publisher.publish("u.first")
    await publisher.publish("w.first")
    await publisher.publish("v.marker")
    assert [e.topic for e in await until_marker(control)] == []
    assert (await gone.get(timeout=5)).topic == "u.first"
    assert (await twin.get(timeout=5)).topic == "w.first"
    assert (await kept.get(timeout=5)).topic == "w.first"

    await listener.unsubscribe(gone)
    await listener.unsubscribe(twin)
    await publisher.publish("u.second")
    await publisher.publish("w.second")
    await publisher.publish("v.marker")
    await publisher.publish("u.marker")

    assert await until_marker(control) == []
    assert (gone.received, len(gone), twin.received, len(twin)) == (1, 0, 1, 0)
    with pytest.raises(BusClosed):
        await gone.get(timeout=5)
    # Another subscription of the same client to the same prefix still works.
    assert (await kept.get(timeout=5)).topic == "w.second"
    # Another client's subscription to the prefix is untouched.
    assert [e.topic for e in await until_marker(others)] == ["u.first", "u.second"]
    # The broker itself forgot "u." for this client (it stops sending, not just the client).
    table = {p["peer"]: p for p in await peers(listener)}
    assert table[listener.peer_name]["subscriptions"] == ["v.", "w."]


# ---------------------------------------------------------------- ask / reply


async def serve_forever(server: BusClient, inbox: Subscription) -> None:
    """Answer ``calc.add`` with the sum and the asker's name, everything else with an error."""
    async for request in inbox:
        if request.topic == "calc.add":
            payload = request.payload
            server.reply(request, {"sum": payload["a"] + payload["b"], "asker": request.sender})
        else:
            server.reply_error(request, "unknown_operation", f"cannot do {request.topic}")


async def test_ask_gets_reply_stamped_with_responder_identity(
    make_client: ClientFactory, transport: str
) -> None:
    server = await make_client("calc", transport)
    inbox = await server.serve("calc.")
    asker = await make_client("asker", transport)

    task = asyncio.create_task(serve_forever(server, inbox))
    try:
        reply = await asker.ask("calc.add", {"a": 2, "b": 3}, timeout=5)
        assert reply.payload == {"sum": 5, "asker": "asker"}
        assert (reply.topic, reply.sender) == ("calc.add", "calc")
        assert reply.correlation_id is not None
        # Many asks in flight at once are each matched to their own reply.
        replies = await asyncio.gather(
            *(asker.ask("calc.add", {"a": n, "b": 1000}, timeout=5) for n in range(50))
        )
        assert [r.payload["sum"] for r in replies] == [n + 1000 for n in range(50)]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert asker.stats()["pending_asks"] == 0


async def test_reply_reaches_only_the_asker(make_client: ClientFactory) -> None:
    server = await make_client("calc", "tcp")
    inbox = await server.serve("calc.")
    bystander = await make_client("bystander", "ipc")
    everything = await bystander.subscribe("")
    side_inbox = await bystander.serve("calc.other.")
    first = await make_client("first", "inproc")
    second = await make_client("second", "tcp")

    task = asyncio.create_task(serve_forever(server, inbox))
    try:
        one, two = await asyncio.gather(
            first.ask("calc.add", {"a": 1, "b": 1}, timeout=5),
            second.ask("calc.add", {"a": 2, "b": 2}, timeout=5),
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert one.payload == {"sum": 2, "asker": "first"}
    assert two.payload == {"sum": 4, "asker": "second"}

    publisher = await make_client("publisher")
    await publisher.publish("zz.marker")
    seen = await until_marker(everything)
    assert [e.topic for e in seen if not e.topic.startswith("bus.")] == []
    for client in (first, second, bystander):
        await barrier(client)
        assert client.counters["late_replies"] == 0, client.identity
    assert len(side_inbox) == 0


async def test_ask_without_server_is_refused_with_no_responder(
    make_client: ClientFactory, transport: str
) -> None:
    asker = await make_client("asker", transport)
    # The timeout is far beyond the test's patience: a refusal, not a timeout, must end the ask.
    with pytest.raises(RemoteError) as refused:
        await asker.ask("nobody.home", {"x": 1}, timeout=30)
    assert refused.value.code == "no_responder"

    # A server that leaves takes its service with it.
    server = await make_client("leaver", transport)
    inbox = await server.serve("leaving.")
    task = asyncio.create_task(serve_forever(server, inbox))
    with pytest.raises(RemoteError) as unknown:
        await asker.ask("leaving.now", timeout=5)
    assert unknown.value.code == "unknown_operation"
    await server.stop()
    await task
    with pytest.raises(RemoteError) as refused_again:
        await asker.ask("leaving.now", timeout=30)
    assert refused_again.value.code == "no_responder"
    assert asker.stats()["pending_asks"] == 0


async def test_ask_to_silent_server_times_out(make_client: ClientFactory, transport: str) -> None:
    server = await make_client("mute", transport)
    inbox = await server.serve("silent.")
    asker = await make_client("asker", transport)

    with pytest.raises(AskTimeout):
        await asker.ask("silent.question", {"q": 1}, timeout=0.5)
    request = await inbox.get(timeout=5)  # it was delivered; nobody answered
    assert (request.topic, request.sender) == ("silent.question", "asker")
    assert request.payload == {"q": 1}
    assert asker.stats()["pending_asks"] == 0

    # A reply after the asker gave up is ignored and counted, not delivered to a later ask.
    server.reply(request, {"late": True})
    await eventually(lambda: asker.counters["late_replies"] == 1, "late reply counted")


async def test_reply_error_raises_remote_error_with_code(
    make_client: ClientFactory, transport: str
) -> None:
    server = await make_client("validator", transport)
    inbox = await server.serve("check.")
    asker = await make_client("asker", transport)

    ask = asyncio.create_task(asker.ask("check.input", {"a": "x"}, timeout=5))
    request = await inbox.get(timeout=5)
    server.reply_error(request, "bad_input", "a must be a number")
    with pytest.raises(RemoteError) as error:
        await ask
    assert (error.value.code, error.value.reason) == ("bad_input", "a must be a number")


async def test_broker_answers_bus_stats_and_peers_itself(
    broker: Broker, make_client: ClientFactory, transport: str
) -> None:
    client = await make_client("curious", transport)
    reply = await client.ask("bus.stats", timeout=5)
    assert (reply.topic, reply.sender) == ("bus.stats", "broker")
    stats = reply.payload
    assert stats["peers"] == broker.stats()["peers"] == 1
    assert {"counters", "errors", "dropped_events", "pending_asks", "queues"} <= set(stats)

    table = await peers(client)
    assert [(p["identity"], p["peer"]) for p in table] == [("curious", client.peer_name)]
    assert table[0]["transport"] == ("inproc" if transport == "inproc" else "remote")

    with pytest.raises(RemoteError) as unknown:
        await client.ask("bus.nothing", timeout=5)
    assert unknown.value.code == "unknown_topic"


# ---------------------------------------------------------------- work queues


async def test_competing_consumers_get_each_item_exactly_once(
    broker: Broker, make_client: ClientFactory, transport: str
) -> None:
    total = 300
    workers = [await make_client(f"worker-{t}", t) for t in TRANSPORTS]
    consumers = [await worker.consume("jobs.build", credit=10) for worker in workers]
    producer = await make_client("producer", transport)

    got: dict[str, list[Delivery]] = {w.identity: [] for w in workers}
    stop = asyncio.Event()

    async def work(name: str, consumer: Consumer) -> None:
        while not stop.is_set():
            try:
                delivery = await consumer.get(timeout=0.05)
            except TimeoutError:
                continue
            got[name].append(delivery)
            delivery.ack()

    tasks = [
        asyncio.create_task(work(w.identity, c)) for w, c in zip(workers, consumers, strict=True)
    ]
    try:
        futures = [producer.enqueue_nowait("jobs.build", {"n": n}) for n in range(total)]
        ids = await asyncio.wait_for(asyncio.gather(*futures), 10)
        await eventually(
            lambda: sum(len(d) for d in got.values()) >= total, f"{total} deliveries", timeout=15
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    for worker in workers:  # nothing more was sent to anyone
        await barrier(worker)
    assert all(len(c) == 0 for c in consumers)
    deliveries = [d for ds in got.values() for d in ds]
    received_ids = [d.envelope.id for d in deliveries]
    assert len(received_ids) == len(set(received_ids)) == total  # no duplicates
    assert set(received_ids) == set(ids)  # no gaps
    assert sorted(d.envelope.payload["n"] for d in deliveries) == list(range(total))
    assert {d.attempt for d in deliveries} == {1}
    assert {d.envelope.sender for d in deliveries} == {"producer"}
    assert all(got[w.identity] for w in workers), {k: len(v) for k, v in got.items()}

    queue = broker.stats()["queues"]["jobs.build"]
    assert (queue["pending"], queue["inflight"], queue["delivered"], queue["redelivered"]) == (
        0,
        0,
        total,
        0,
    )
    await eventually(lambda: producer.stats()["unfinished_work"] == 0, "producer told all done")


async def test_consumer_never_holds_more_than_its_credit(
    broker: Broker, make_client: ClientFactory
) -> None:
    total, credit = 30, 2
    workers = [await make_client(f"worker-{t}", t) for t in TRANSPORTS]
    consumers = [await worker.consume("jobs.slow", credit=credit) for worker in workers]
    producer = await make_client("producer")
    await asyncio.gather(*(producer.enqueue("jobs.slow", {"n": n}) for n in range(total)))

    # Nobody has acknowledged anything: the broker holds back all but `credit` per consumer.
    await eventually(
        lambda: broker.stats()["queues"]["jobs.slow"]["inflight"] == credit * len(workers),
        "every consumer filled up to its credit",
    )
    for worker, consumer in zip(workers, consumers, strict=True):
        await barrier(worker)
        assert len(consumer) == credit, worker.identity
    assert broker.stats()["queues"]["jobs.slow"]["pending"] == total - credit * len(workers)

    done: list[bytes] = []
    most_held: dict[str, int] = {}

    async def slow_worker(worker: BusClient, consumer: Consumer) -> None:
        held: list[Delivery] = []
        while len(done) < total:
            held += consumer.get_nowait_all()
            if not held:
                with contextlib.suppress(TimeoutError):
                    held.append(await consumer.get(timeout=0.05))
                continue
            delivery = held.pop(0)  # acknowledge one item, keep the others unacknowledged
            done.append(delivery.envelope.id)
            delivery.ack()
            # After a round trip, whatever the broker sent in exchange for the ack is here.
            await barrier(worker)
            held += consumer.get_nowait_all()
            most_held[worker.identity] = max(most_held.get(worker.identity, 0), len(held))
            assert len(held) <= credit, f"{worker.identity} holds {len(held)} unacknowledged"

    await asyncio.wait_for(
        asyncio.gather(*(slow_worker(w, c) for w, c in zip(workers, consumers, strict=True))),
        30,
    )
    assert len(done) == len(set(done)) == total
    # The limit was reached, not merely respected by having little work.
    assert max(most_held.values()) == credit
    queue = broker.stats()["queues"]["jobs.slow"]
    assert (queue["pending"], queue["inflight"], queue["delivered"]) == (0, 0, total)


async def test_nack_with_requeue_redelivers_as_second_attempt(
    broker: Broker, make_client: ClientFactory, transport: str
) -> None:
    worker = await make_client("worker", transport)
    consumer = await worker.consume("jobs.retry", credit=1)
    producer = await make_client("producer", transport)

    message_id = await producer.enqueue("jobs.retry", {"try": "me"})
    first = await consumer.get(timeout=5)
    assert (first.envelope.id, first.attempt) == (message_id, 1)
    first.nack(requeue=True)
    second = await consumer.get(timeout=5)
    assert (second.envelope.id, second.attempt) == (message_id, 2)
    assert second.envelope.payload == {"try": "me"}
    second.ack()

    # nack without requeue drops the item for good: it is not delivered again.
    dropped_id = await producer.enqueue("jobs.retry", {"poison": True})
    poison = await consumer.get(timeout=5)
    assert poison.envelope.id == dropped_id
    poison.nack(requeue=False)
    follow_id = await producer.enqueue("jobs.retry", {"after": True})
    follow = await consumer.get(timeout=5)
    assert (follow.envelope.id, follow.attempt) == (follow_id, 1)
    follow.ack()
    await barrier(worker)
    assert len(consumer) == 0
    stats = broker.stats()
    assert stats["counters"]["discarded"] == 1
    queue = stats["queues"]["jobs.retry"]
    assert (queue["redelivered"], queue["pending"], queue["inflight"]) == (1, 0, 0)


async def test_a_delivery_is_settled_once(
    broker: Broker, make_client: ClientFactory, transport: str
) -> None:
    """A handler that nacks its work for a retry, followed by the runtime's ack, must not ack the
    redelivered copy: only the first settling of a delivery counts."""
    worker = await make_client("worker", transport)
    consumer = await worker.consume("jobs.once", credit=1)
    producer = await make_client("producer", transport)
    message_id = await producer.enqueue("jobs.once", {"n": 1})
    first = await consumer.get(timeout=5)
    first.nack(requeue=True)
    first.ack()  # too late: ignored
    first.nack(requeue=False)  # ignored too: the item is not dropped
    assert first.settled
    second = await consumer.get(timeout=5)
    assert (second.envelope.id, second.attempt) == (message_id, 2)
    assert not second.settled
    second.ack()
    await barrier(worker)
    queue = broker.stats()["queues"]["jobs.once"]
    assert (queue["redelivered"], queue["pending"], queue["inflight"]) == (1, 0, 0)
    assert broker.stats()["counters"].get("discarded", 0) == 0


async def test_settling_work_after_stop_consuming_brings_no_new_work(
    broker: Broker, make_client: ClientFactory, transport: str
) -> None:
    """Regression: an ack (or nack) after ``stop_consuming`` gave the credit back, and the broker
    bounced the next item between itself and the stopped consumer, its attempt growing each time."""
    worker = await make_client("worker", transport)
    consumer = await worker.consume("jobs.stop", credit=1)
    producer = await make_client("producer", transport)
    await producer.enqueue("jobs.stop", {"n": 1})
    await producer.enqueue("jobs.stop", {"n": 2})
    held = await consumer.get(timeout=5)
    await worker.stop_consuming(consumer)
    held.ack()  # items already delivered must still be acknowledged
    await barrier(worker)
    await barrier(producer)
    queue = broker.stats()["queues"]["jobs.stop"]
    assert (queue["pending"], queue["inflight"], queue["consumers"]) == (1, 0, 0)
    assert (queue["delivered"], queue["redelivered"]) == (1, 0)

    later = await (await make_client("later", transport)).consume("jobs.stop")
    second = await later.get(timeout=5)
    assert (second.envelope.payload, second.attempt) == ({"n": 2}, 1)
    second.ack()


async def test_enqueue_confirms_with_the_message_id(
    make_client: ClientFactory, transport: str
) -> None:
    producer = await make_client("producer", transport)
    confirmed = await producer.enqueue("jobs.mail", {"to": "a@example.org"})
    assert isinstance(confirmed, bytes)
    assert len(confirmed) == 16
    later = producer.enqueue_nowait("jobs.mail", {"to": "b@example.org"})
    later_id = await asyncio.wait_for(later, 5)
    assert later_id != confirmed
    assert producer.stats()["unfinished_work"] == 2  # held until a consumer acknowledges

    worker = await make_client("worker", transport)
    consumer = await worker.consume("jobs.mail", credit=5)
    deliveries = [await consumer.get(timeout=5) for _ in range(2)]
    assert [d.envelope.id for d in deliveries] == [confirmed, later_id]
    assert [d.envelope.sender for d in deliveries] == ["producer", "producer"]
    # Work waiting before the consumer came is its first attempt (not bounced and redelivered).
    assert [d.attempt for d in deliveries] == [1, 1]
    for delivery in deliveries:
        delivery.ack()
    await eventually(lambda: producer.stats()["unfinished_work"] == 0, "producer told both done")


async def test_work_with_a_stable_id_is_held_once_whichever_producer_sends_it(
    make_client: ClientFactory,
) -> None:
    """A scheduler taking over re-sends unfinished dispatches under their own ids: the broker keeps
    one copy while it holds the work, so a consumer runs it once."""
    stable = bytes(range(16))
    first, second = await make_client("producer"), await make_client("producer")
    assert await first.enqueue("jobs.stable", {"from": 1}, message_id=stable) == stable
    assert await first.enqueue("jobs.stable", {"from": 1}, message_id=stable) == stable
    assert await second.enqueue("jobs.stable", {"from": 2}, message_id=stable) == stable
    await first.enqueue("jobs.stable", {"marker": True})

    worker = await make_client("worker")
    consumer = await worker.consume("jobs.stable", credit=5)
    got = [await consumer.get(timeout=5) for _ in range(2)]
    assert [d.envelope.payload for d in got] == [{"from": 1}, {"marker": True}]
    assert got[0].envelope.id == stable  # confirmed before the marker, so no copy between
    for delivery in got:
        delivery.ack()


async def test_a_message_id_that_is_not_16_bytes_is_refused(make_client: ClientFactory) -> None:
    producer = await make_client("producer")
    with pytest.raises(EnvelopeError, match="16 bytes"):
        producer.enqueue_nowait("jobs.stable", {}, message_id=b"short")
