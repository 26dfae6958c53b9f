"""Liveness and resilience of the bus with real processes, real sockets and real keys.

Dead and frozen peers (a SIGKILLed or SIGSTOPped OS process, a registered peer that never
heartbeats) are declared down and their unacknowledged work is redelivered; clients re-register
transparently after a broker restart and re-send unfinished work; a slow subscriber loses events
but every loss is counted, while no unit of work is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgpack
import pytest
import zmq
import zmq.asyncio

from bus import Broker, BusClient, Consumer, Delivery, Envelope, KeysDirectory, wire
from config import BusSettings
from tests.bus.waits import barrier, eventually, next_matching, peers
from tests.conftest import OPEN_ACL, ClientFactory, endpoint_for

REMOTE_PEER = Path(__file__).with_name("remote_peer.py")
BURST = 50_000


# ---------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def remote_peer(
    broker: Broker, keys: KeysDirectory, settings: BusSettings, identity: str, *extra: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """``tests/bus/remote_peer.py`` in a child process, connected over tcp+CURVE."""
    keys.identity_keypair(identity, create=True)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(REMOTE_PEER),
        "--endpoint",
        endpoint_for(broker, "tcp"),
        "--keys",
        str(keys.root),
        "--identity",
        identity,
        "--heartbeat",
        str(settings.heartbeat_interval_s),
        "--liveness",
        str(settings.heartbeat_liveness),
        *extra,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGCONT)  # a stopped process cannot die of SIGKILL late
                process.kill()
        await asyncio.wait_for(process.wait(), 10)


async def read_line(process: asyncio.subprocess.Process, word: str, timeout: float = 20) -> str:
    """The child's next stdout line, which must start with ``word``."""
    assert process.stdout is not None
    try:
        raw = await asyncio.wait_for(process.stdout.readline(), timeout)
    except TimeoutError:
        raise AssertionError(f"child printed no {word!r} line within {timeout}s") from None
    line = raw.decode().strip()
    assert line.startswith(word + " "), f"expected {word!r}, child said {line!r}"
    return line[len(word) + 1 :]


def is_peer_event(kind: str, peer: str) -> Callable[[Envelope], bool]:
    """Matches the ``bus.peer.<kind>`` event of one peer (by its broker-assigned name)."""
    return lambda e: e.topic == f"bus.peer.{kind}" and e.payload["peer"] == peer


@contextlib.asynccontextmanager
async def standalone_broker(
    settings: BusSettings, keys: KeysDirectory, endpoints: list[str], name: str
) -> AsyncIterator[Broker]:
    broker = Broker(settings=settings, keys=keys, endpoints=endpoints, inproc_name=name)
    await broker.start()
    try:
        yield broker
    finally:
        await asyncio.wait_for(broker.stop(), 5)


@contextlib.asynccontextmanager
async def started(client: BusClient) -> AsyncIterator[BusClient]:
    await client.start()
    try:
        yield client
    finally:
        await asyncio.wait_for(client.stop(), 5)


def remote_client(
    endpoint: str, identity: str, keys: KeysDirectory, settings: BusSettings
) -> BusClient:
    return BusClient(
        endpoint,
        identity=identity,
        keypair=keys.identity_keypair(identity, create=True),
        server_key=keys.broker_public_key(),
        settings=settings,
    )


def local_client(broker: Broker, identity: str, settings: BusSettings) -> BusClient:
    return BusClient(
        broker.inproc_endpoint, identity=identity, context=broker.context, settings=settings
    )


async def ack_all(consumer: Consumer, got: list[Delivery], stop: asyncio.Event) -> None:
    """Acknowledge every delivery as soon as it arrives, recording it in ``got``."""
    while not stop.is_set():
        try:
            delivery = await consumer.get(timeout=0.05)
        except TimeoutError:
            continue
        got.append(delivery)
        delivery.ack()


# ---------------------------------------------------------------- dead and silent peers


async def test_work_held_by_a_killed_process_is_redelivered(
    broker: Broker, keys: KeysDirectory, settings: BusSettings, make_client: ClientFactory
) -> None:
    monitor = await make_client("monitor")
    events = await monitor.subscribe("bus.peer.")
    producer = await make_client("producer")
    ids = [await producer.enqueue("jobs.fragile", {"n": n}) for n in range(5)]

    extra = ("--consume", "jobs.fragile", "--hold", "3")
    async with remote_peer(broker, keys, settings, "doomed", *extra) as process:
        doomed = await read_line(process, "READY")
        held = {bytes.fromhex(h) for h in (await read_line(process, "HOLDING")).split()}
        assert len(held) == 3
        assert held <= set(ids)
        await next_matching(events, is_peer_event("up", doomed))
        assert broker.stats()["queues"]["jobs.fragile"]["inflight"] == 3

        survivor = await make_client("survivor", "ipc")
        consumer = await survivor.consume("jobs.fragile", credit=10)
        fresh = [await consumer.get(timeout=5) for _ in range(2)]  # what the child left
        assert {d.envelope.id for d in fresh} == set(ids) - held
        assert {d.attempt for d in fresh} == {1}

        process.kill()  # SIGKILL: no BYE, no cleanup, the work is still unacknowledged
        assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL

        down = await next_matching(events, is_peer_event("down", doomed))
        assert down.payload["identity"] == "doomed"
        assert down.payload["requeued"] == 3
        assert down.payload["reason"] in ("heartbeat timeout", "unreachable")

        redelivered = [await consumer.get(timeout=5) for _ in range(3)]
        assert {d.envelope.id for d in redelivered} == held
        assert all(d.attempt >= 2 for d in redelivered), [d.attempt for d in redelivered]
        for delivery in [*fresh, *redelivered]:
            delivery.ack()

    await eventually(lambda: producer.stats()["unfinished_work"] == 0, "producer told all done")
    queue = broker.stats()["queues"]["jobs.fragile"]
    assert (queue["pending"], queue["inflight"], queue["redelivered"]) == (0, 0, 3)


async def test_peer_that_never_heartbeats_is_declared_down(
    broker: Broker, keys: KeysDirectory, make_client: ClientFactory, transport: str
) -> None:
    monitor = await make_client("monitor")
    events = await monitor.subscribe("bus.peer.")

    # A hand-driven DEALER: registers, then never sends another frame (its socket stays open).
    sock = broker.context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if transport != "inproc":
            pair = keys.identity_keypair("mute", create=True)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, pair.public)
            sock.setsockopt(zmq.CURVE_SECRETKEY, pair.secret)
            sock.setsockopt(zmq.CURVE_SERVERKEY, keys.broker_public_key())
        sock.connect(endpoint_for(broker, transport))
        await sock.send_multipart([wire.HELLO, wire.pack([{"ref": 1, "identity": "mute"}])])
        command, body = await asyncio.wait_for(sock.recv_multipart(), 5)
        assert command == wire.CONTROL_ACK
        (welcome,) = msgpack.unpackb(body, raw=False)
        mute = welcome["peer"]

        await next_matching(events, is_peer_event("up", mute))
        down = await next_matching(events, is_peer_event("down", mute))
        assert (down.payload["identity"], down.payload["reason"]) == ("mute", "heartbeat timeout")
        assert mute not in {p["peer"] for p in await peers(monitor)}
    finally:
        sock.close(linger=0)


async def test_frozen_process_is_declared_down_and_rejoins_when_thawed(
    broker: Broker, keys: KeysDirectory, settings: BusSettings, make_client: ClientFactory
) -> None:
    monitor = await make_client("monitor")
    events = await monitor.subscribe("bus.peer.")

    async with remote_peer(broker, keys, settings, "sleepy") as process:
        sleepy = await read_line(process, "READY")
        await next_matching(events, is_peer_event("up", sleepy))

        process.send_signal(signal.SIGSTOP)  # alive, connected, but silent
        down = await next_matching(events, is_peer_event("down", sleepy))
        assert down.payload["reason"] == "heartbeat timeout"

        process.send_signal(signal.SIGCONT)  # it notices and registers again, unprompted
        again = await next_matching(
            events, lambda e: e.topic == "bus.peer.up" and e.payload["identity"] == "sleepy"
        )
        assert again.payload["peer"] != sleepy

        assert process.stdin is not None
        process.stdin.close()  # asks the child to stop: it says BYE
        assert await asyncio.wait_for(process.wait(), 10) == 0
        bye = await next_matching(events, is_peer_event("down", again.payload["peer"]))
        assert bye.payload["reason"] == "said bye"


# ---------------------------------------------------------------- broker restart


@pytest.mark.parametrize("scheme", ["ipc", "tcp"])
async def test_clients_reregister_after_broker_restart(
    keys: KeysDirectory, settings: BusSettings, tmp_path: Path, scheme: str
) -> None:
    requested = f"ipc://{tmp_path}/restart.sock" if scheme == "ipc" else "tcp://127.0.0.1:0"
    async with contextlib.AsyncExitStack() as stack:
        first = Broker(settings=settings, keys=keys, endpoints=[requested], inproc_name="first")
        await first.start()
        stack.push_async_callback(first.stop)  # no-op if already stopped below
        (endpoint,) = first.endpoints  # with tcp, the port the OS chose: the restart reuses it

        listener = await stack.enter_async_context(
            started(remote_client(endpoint, "listener", keys, settings))
        )
        producer = await stack.enter_async_context(
            started(remote_client(endpoint, "producer", keys, settings))
        )
        news = await listener.subscribe("news.")
        await producer.publish("news.before")
        assert (await news.get(timeout=5)).topic == "news.before"
        ids = {await producer.enqueue("jobs.durable", {"n": n}) for n in range(3)}
        assert first.stats()["queues"]["jobs.durable"]["pending"] == 3  # no consumer yet

        await first.stop()  # all the broker's state is gone with it
        second = await stack.enter_async_context(
            standalone_broker(settings, keys, [endpoint], "second")
        )
        assert second.endpoints == [endpoint]
        monitor = await stack.enter_async_context(
            started(local_client(second, "monitor", settings))
        )

        async def listener_back() -> bool:
            return any(
                p["identity"] == "listener" and p["subscriptions"] == ["news."]
                for p in await peers(monitor)
            )

        await eventually(listener_back, "listener re-registered its subscription", timeout=10)
        await producer.publish("news.after")
        after = await next_matching(news, lambda e: e.topic != "news.before")
        assert (after.topic, after.sender) == ("news.after", "producer")

        # The work the first broker lost is re-sent by its producer and consumed now.
        consumer = await monitor.consume("jobs.durable", credit=10)
        got: list[Delivery] = []
        while {d.envelope.id for d in got} != ids:
            got.append(await consumer.get(timeout=10))
        for delivery in got:
            delivery.ack()
        await barrier(monitor)
        assert len(consumer) == 0
        assert len(got) == 3
        assert sorted(d.envelope.payload["n"] for d in got) == [0, 1, 2]
        await eventually(lambda: producer.stats()["unfinished_work"] == 0, "producer told done")
        assert listener.counters["reconnects"] >= 1
        assert producer.counters["reconnects"] >= 1


# ---------------------------------------------------------------- slow subscribers


@pytest.fixture
def burst_settings() -> BusSettings:
    """A burst keeps the loop busy: a wide liveness window keeps busy peers from being expired
    (which would lose or redeliver for another reason than the one under test)."""
    return BusSettings(
        heartbeat_interval_s=0.1, heartbeat_liveness=50, ask_timeout_s=10.0, acl=OPEN_ACL
    )


async def burst(publisher: BusClient) -> list[asyncio.Future[bytes]]:
    """BURST events, with one unit of work enqueued after every hundredth."""
    confirms: list[asyncio.Future[bytes]] = []
    for n in range(BURST):
        await publisher.publish("burst.tick", {"n": n})
        if n % 100 == 99:
            confirms.append(publisher.enqueue_nowait("jobs.burst", {"n": n}))
    return confirms


async def burst_while_acking(
    publisher: BusClient, worker: BusClient
) -> tuple[Consumer, list[Delivery], list[bytes]]:
    """The burst, while ``worker`` consumes ``jobs.burst`` and acknowledges every delivery.

    Returns once every enqueued unit of work was delivered: the consumer, the deliveries it got
    and the ids the broker confirmed.
    """
    consumer = await worker.consume("jobs.burst", credit=20)
    got: list[Delivery] = []
    stop = asyncio.Event()
    acking = asyncio.create_task(ack_all(consumer, got, stop))
    try:
        confirms = await burst(publisher)
        ids = await asyncio.wait_for(asyncio.gather(*confirms), 30)
        await eventually(lambda: len(got) >= len(ids), "all work delivered", timeout=30)
    finally:
        stop.set()
        await acking
    return consumer, got, ids


async def test_subscriber_that_does_not_read_loses_counted_events_but_no_work(
    keys: KeysDirectory, burst_settings: BusSettings
) -> None:
    settings = burst_settings
    endpoints = ["tcp://127.0.0.1:0"]
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(
            standalone_broker(settings, keys, endpoints, "slow-inbox")
        )
        (endpoint,) = broker.endpoints
        sleeper = await stack.enter_async_context(
            started(remote_client(endpoint, "sleeper", keys, settings))
        )
        worker = await stack.enter_async_context(
            started(remote_client(endpoint, "worker", keys, settings))
        )
        publisher = await stack.enter_async_context(
            started(local_client(broker, "publisher", settings))
        )
        ticks = await sleeper.subscribe("burst.", maxsize=100)  # and never read
        consumer, got, ids = await burst_while_acking(publisher, worker)

        def accounted() -> int:
            return ticks.received + ticks.dropped + int(broker.stats()["dropped_events"])

        await eventually(lambda: accounted() >= BURST, "every event received or counted", 20)
        assert accounted() == BURST
        assert ticks.received == len(ticks) == 100
        assert ticks.dropped > 0
        assert sleeper.stats()["dropped_events"] == ticks.dropped

        await barrier(worker)
        assert len(consumer) == 0
        received_ids = [d.envelope.id for d in got]
        assert len(received_ids) == len(set(received_ids)) == BURST // 100
        assert set(received_ids) == set(ids)
        await eventually(lambda: publisher.stats()["unfinished_work"] == 0, "publisher told done")


async def test_full_pipe_drops_are_counted_by_the_broker_and_work_still_flows(
    keys: KeysDirectory, burst_settings: BusSettings
) -> None:
    # The broker may queue only 2 frames per peer: events beyond that are dropped (and counted),
    # work waits for room instead.
    settings = BusSettings(
        heartbeat_interval_s=burst_settings.heartbeat_interval_s,
        heartbeat_liveness=burst_settings.heartbeat_liveness,
        ask_timeout_s=burst_settings.ask_timeout_s,
        send_hwm=2,
        acl=OPEN_ACL,
    )
    async with contextlib.AsyncExitStack() as stack:
        broker = await stack.enter_async_context(standalone_broker(settings, keys, [], "slow-pipe"))
        worker = await stack.enter_async_context(started(local_client(broker, "worker", settings)))
        publisher = await stack.enter_async_context(
            started(local_client(broker, "publisher", settings))
        )

        # A hand-driven subscriber that reads nothing during the burst (its pipe fills up) but
        # keeps heartbeating, so that it stays registered.
        sock: zmq.asyncio.Socket = broker.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1)
        stack.callback(sock.close, 0)
        sock.connect(broker.inproc_endpoint)
        await sock.send_multipart([wire.HELLO, wire.pack([{"ref": 1, "identity": "stuck"}])])
        await sock.send_multipart([wire.SUBSCRIBE, wire.pack([{"ref": 2, "prefixes": ["burst."]}])])
        acks: list[int] = []
        while len(acks) < 2:
            frames = await asyncio.wait_for(sock.recv_multipart(), 5)
            if frames[0] != wire.HEARTBEAT:
                assert frames[0] == wire.CONTROL_ACK
                acks += [ack["ref"] for ack in msgpack.unpackb(frames[1], raw=False)]
        assert acks == [1, 2]

        async def heartbeat() -> None:
            while True:
                await sock.send_multipart([wire.HEARTBEAT])
                await asyncio.sleep(settings.heartbeat_interval_s / 2)

        beating = asyncio.create_task(heartbeat())
        try:
            consumer, got, ids = await burst_while_acking(publisher, worker)
            # Once the broker answered this, it has sent or counted as dropped every event.
            await barrier(publisher)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

        received = 0
        drain: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)
        while True:  # inproc: whatever was sent is in the pipe now
            try:
                frames = drain.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            if frames[0] == wire.PUBLISH:
                received += len(wire.unpack_batch(frames[1], 1 << 31))
        stats = broker.stats()
        assert stats["dropped_events"] > 0
        assert received + stats["dropped_events"] == BURST
        table = {p["identity"]: p for p in await peers(publisher)}
        assert table["stuck"]["dropped_events"] == stats["dropped_events"]

        await barrier(worker)
        assert len(consumer) == 0
        received_ids = [d.envelope.id for d in got]
        assert len(received_ids) == len(set(received_ids)) == BURST // 100
        assert set(received_ids) == set(ids)
        assert stats["queues"]["jobs.burst"]["redelivered"] == 0
        await eventually(lambda: publisher.stats()["unfinished_work"] == 0, "publisher told done")
