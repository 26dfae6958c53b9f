"""Who may talk to the broker, under which name, and about what.

Real CURVE keys on disk, a real ZAP allow-list, real sockets. Negative checks ("nothing arrived")
wait a bounded time, or better, are ordered before a marker that does arrive.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from bus import (
    AuthError,
    Broker,
    BusClient,
    Envelope,
    KeyPair,
    KeysDirectory,
    RemoteError,
    Subscription,
    load_keypair,
    wire,
    write_keypair,
)
from config import AclRule, BusSettings
from tests.bus.raw import RawPeer, envelope, pack
from tests.conftest import ClientFactory, endpoint_for, start_broker, start_client

REMOTE_TRANSPORTS = ("tcp", "ipc")
SILENCE_S = 0.5
RawFactory = Callable[..., RawPeer]


@pytest.fixture
def settings() -> BusSettings:
    """A liveness window wide enough that a hand-driven peer is never dropped mid-test."""
    return BusSettings(heartbeat_interval_s=0.5, heartbeat_liveness=10, ask_timeout_s=3.0)


class Net:
    """The ``broker`` fixture's surroundings, plus sockets and clients a test builds by hand."""

    def __init__(self, broker: Broker, keys: KeysDirectory, settings: BusSettings) -> None:
        self.broker = broker
        self.keys = keys
        self.settings = settings
        self.raw_peers: list[RawPeer] = []
        self.clients: list[BusClient] = []

    def endpoint(self, transport: str) -> str:
        return endpoint_for(self.broker, transport)

    def raw(
        self, transport: str, keypair: KeyPair | None = None, server_key: bytes | None = None
    ) -> RawPeer:
        """A DEALER with the given CURVE keys, or none at all."""
        peer = RawPeer.connect(self.broker.context, self.endpoint(transport), keypair, server_key)
        self.raw_peers.append(peer)
        return peer

    def client(
        self, transport: str, identity: str, keypair: KeyPair, server_key: bytes | None = None
    ) -> BusClient:
        """An unstarted remote client with its own context and the given keys."""
        client = BusClient(
            self.endpoint(transport),
            identity=identity,
            keypair=keypair,
            server_key=server_key or self.keys.broker_public_key(),
            settings=self.settings,
        )
        self.clients.append(client)
        return client


@pytest.fixture
async def net(broker: Broker, keys: KeysDirectory, settings: BusSettings) -> AsyncIterator[Net]:
    bus = Net(broker, keys, settings)
    yield bus
    for client in bus.clients:
        await asyncio.wait_for(client.stop(), 5)
    for peer in bus.raw_peers:  # before the broker's context ends
        peer.close()


async def _watch(make_client: ClientFactory, *prefixes: str) -> Subscription:
    watcher = await make_client("watcher")
    return await watcher.subscribe(*prefixes)


async def _assert_silent(subscription: Subscription) -> None:
    """Bounded negative check: no event at all within SILENCE_S."""
    with pytest.raises(TimeoutError):
        await subscription.get(timeout=SILENCE_S)


async def _still_serving(make_client: ClientFactory, transport: str) -> None:
    """A legitimate client can still register, publish and be heard."""
    listener = await make_client("listener")
    events = await listener.subscribe("demo.check")
    client = await make_client("legit", transport)
    await client.publish("demo.check", {"ok": True})
    event = await events.get(timeout=5)
    assert (event.sender, event.payload) == ("legit", {"ok": True})


# ---------------------------------------------------------------- no keys, unknown keys


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_peer_without_curve_gets_nothing_through(
    net: Net, make_client: ClientFactory, transport: str
) -> None:
    everything = await _watch(make_client, "")
    plain = net.raw(transport)

    await plain.send(wire.HELLO, pack([{"ref": 1, "identity": "scheduler"}]))
    await plain.send(wire.PUBLISH, pack([envelope(topic="demo.sneaky")]))

    await plain.expect_nothing(SILENCE_S)
    await _assert_silent(everything)
    assert net.broker.stats()["peers"] == 1  # only the watcher
    await _still_serving(make_client, transport)


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
def test_client_refuses_to_go_remote_without_keys(broker: Broker, transport: str) -> None:
    with pytest.raises(AuthError, match="needs a client keypair and the broker's public key"):
        BusClient(endpoint_for(broker, transport), identity="plain")


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_unlisted_key_is_refused_and_heard_nowhere(
    net: Net, make_client: ClientFactory, tmp_path: Path, transport: str
) -> None:
    everything = await _watch(make_client, "")
    outsider = write_keypair(tmp_path / "elsewhere", "outsider")

    with pytest.raises(AuthError, match="not authorised or unreachable"):
        await net.client(transport, "outsider", outsider).start(timeout=1.0)

    raw = net.raw(transport, outsider, net.keys.broker_public_key())
    await raw.send(wire.HELLO, pack([{"ref": 1, "identity": "outsider"}]))
    await raw.send(wire.PUBLISH, pack([envelope(topic="demo.sneaky")]))
    await raw.expect_nothing(SILENCE_S)
    await _assert_silent(everything)
    assert net.broker.stats()["peers"] == 1
    await _still_serving(make_client, transport)


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_wrong_broker_key_is_reported_not_hung_on(
    net: Net, tmp_path: Path, transport: str
) -> None:
    impostor = write_keypair(tmp_path / "impostor", "broker")
    alice = net.keys.identity_keypair("alice", create=True)
    client = net.client(transport, "alice", alice, server_key=impostor.public)
    with pytest.raises(AuthError, match="not authorised or unreachable"):
        await client.start(timeout=1.0)


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_allowing_a_key_admits_new_connections_without_restart(
    net: Net, make_client: ClientFactory, tmp_path: Path, transport: str
) -> None:
    events = await _watch(make_client, "demo.")
    pair = write_keypair(tmp_path / "newcomer-host", "newcomer")
    with pytest.raises(AuthError, match="not authorised or unreachable"):
        await net.client(transport, "newcomer", pair).start(timeout=1.0)

    # What `taskbus keys allow` does: drop the public key file into the allow-list. The key file's
    # name, not what the client claims, becomes its identity.
    allowed = net.keys.allow("late-comer", pair.public)
    assert allowed == net.keys.allowed_dir / "late-comer.key"

    admitted = net.client(transport, "newcomer", pair)
    await admitted.start(timeout=5)
    await admitted.publish("demo.hello", {"n": 1})
    event = await events.get(timeout=5)
    assert (event.topic, event.sender) == ("demo.hello", "late-comer")


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_revoking_a_key_refuses_new_connections(
    net: Net, make_client: ClientFactory, transport: str
) -> None:
    await make_client("leaver", transport)  # admitted while listed
    pair = net.keys.identity_keypair("leaver")

    (net.keys.allowed_dir / "leaver.key").unlink()

    with pytest.raises(AuthError, match="not authorised or unreachable"):
        await net.client(transport, "leaver", pair).start(timeout=1.0)


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_rewriting_a_key_file_in_place_rotates_the_key(
    net: Net, make_client: ClientFactory, tmp_path: Path, transport: str
) -> None:
    """``cp new.key allowed/alice.key`` leaves the directory's mtime alone; it must still count."""
    events = await _watch(make_client, "demo.")
    old = net.keys.identity_keypair("alice", create=True)
    await net.client(transport, "alice", old).start(timeout=5)  # the allow-list is now loaded
    new = write_keypair(tmp_path / "alice-new", "alice")

    (net.keys.allowed_dir / "alice.key").write_bytes(
        (tmp_path / "alice-new/alice.key").read_bytes()
    )

    with pytest.raises(AuthError, match="not authorised or unreachable"):
        await net.client(transport, "alice", old).start(timeout=1.0)
    rotated = net.client(transport, "alice", new)
    await rotated.start(timeout=5)
    await rotated.publish("demo.rotated", {})
    assert (await events.get(timeout=5)).sender == "alice"


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_an_unreadable_key_file_locks_nobody_else_out(
    net: Net, make_client: ClientFactory, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    events = await _watch(make_client, "demo.")
    (net.keys.allowed_dir / "broken.key").parent.mkdir(parents=True, exist_ok=True)
    (net.keys.allowed_dir / "broken.key").write_text("not a certificate\n")

    client = net.client(transport, "bob", net.keys.identity_keypair("bob", create=True))
    await client.start(timeout=5)
    await client.publish("demo.still", {})
    assert (await events.get(timeout=5)).sender == "bob"
    assert "broken.key" in caplog.text  # and the operator is told which file was skipped


# ---------------------------------------------------------------- forged identities


@pytest.mark.parametrize("transport", REMOTE_TRANSPORTS)
async def test_remote_sender_is_the_key_not_the_claim(
    net: Net, make_client: ClientFactory, transport: str
) -> None:
    watcher = await make_client("watcher")
    events = await watcher.subscribe("demo.")
    requests = await watcher.serve("svc.")
    keys = net.keys
    mallory = net.raw(
        transport, keys.identity_keypair("mallory", create=True), keys.broker_public_key()
    )

    ack = await mallory.hello("scheduler")  # claims to be the scheduler
    assert ack["identity"] == "mallory"
    assert ack["peer"].startswith("mallory#")
    forged = envelope(topic="demo.forged", sender="scheduler", reply_to="scheduler#1")
    await mallory.send(wire.PUBLISH, pack([forged]))
    event = await events.get(timeout=5)
    assert (event.topic, event.sender, event.reply_to) == ("demo.forged", "mallory", None)

    forged_ask = envelope(topic="svc.echo", sender="scheduler", reply_to="scheduler#1")
    await mallory.send(wire.REQUEST, pack([forged_ask]))
    request = await requests.get(timeout=5)
    assert (request.sender, request.reply_to) == ("mallory", ack["peer"])

    # Claiming the scheduler's name buys none of its rights.
    dispatch = envelope(topic="scheduler.task.dispatch", sender="scheduler")
    await mallory.send(wire.PUBLISH, pack([dispatch]))
    error = await mallory.expect_error()
    assert error["code"] == "denied"
    assert "'mallory' may not publish 'scheduler.task.dispatch'" in error["reason"]


async def test_inproc_sender_is_its_hello_name(net: Net, make_client: ClientFactory) -> None:
    events = await _watch(make_client, "demo.")
    alice = net.raw("inproc")
    assert (await alice.hello("alice"))["identity"] == "alice"

    await alice.send(wire.PUBLISH, pack([envelope(topic="demo.one", sender="scheduler")]))
    event = await events.get(timeout=5)
    assert (event.topic, event.sender) == ("demo.one", "alice")

    # A second HELLO on the same connection cannot rename it.
    await alice.send(wire.HELLO, pack([{"ref": 2, "identity": "scheduler"}]))
    error = await alice.expect_error()
    assert (error["code"], error["ref"]) == ("field", 2)
    assert "already registered" in error["reason"]
    await alice.send(wire.PUBLISH, pack([envelope(topic="demo.two", sender="scheduler")]))
    event = await events.get(timeout=5)
    assert (event.topic, event.sender) == ("demo.two", "alice")


async def test_client_envelopes_are_stamped_with_the_hello_name(
    make_client: ClientFactory, transport: str
) -> None:
    events = await _watch(make_client, "demo.")
    client = await make_client("carol", transport)
    await client.publish("demo.stamped", {})
    event = await events.get(timeout=5)
    assert event.sender == "carol"


async def test_nobody_may_forge_the_broker_s_events(
    make_client: ClientFactory, transport: str
) -> None:
    watcher = await make_client("cli")  # an admin: the bus's events are theirs to read
    bus_events = await watcher.subscribe("bus.peer.down")
    mallory = await make_client("mallory", transport)
    await mallory.publish("bus.peer.down", {"identity": "scheduler", "peer": "scheduler#1"})
    error = await mallory.errors.get(timeout=5)
    assert error.code == "denied"
    await mallory.stop()  # the broker's own bus.peer.down arrives, and is the only one
    event = await bus_events.get(timeout=5)
    assert (event.sender, event.payload["identity"]) == ("broker", "mallory")


# ---------------------------------------------------------------- access control


async def test_only_the_scheduler_dispatches_and_only_executors_take_dispatches(
    make_client: ClientFactory, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the default ACL a second admitted identity can neither produce nor take work on the
    internal queues, by any command; the scheduler and an executor can."""
    admin = await make_client("cli")
    errors = await admin.subscribe("bus.error")
    mallory = await make_client("mallory", transport)
    queue = "scheduler.task.dispatch.user"

    with pytest.raises(RemoteError) as enqueued:
        await mallory.enqueue(queue, {"task": "evil"}, timeout=5)
    assert enqueued.value.code == "denied"
    assert "'mallory' may not enqueue 'scheduler.task.dispatch.user'" in enqueued.value.reason
    event = await errors.get(timeout=5)
    assert event.sender == "broker"
    assert {k: event.payload[k] for k in ("code", "identity", "command", "topic")} == {
        "code": "denied",
        "identity": "mallory",
        "command": "E",
        "topic": queue,
    }
    assert any(r.getMessage().startswith("bus.reject code=denied ") for r in caplog.records)
    for attempt in (
        mallory.ask(queue, {"task": "evil"}, timeout=5),
        mallory.enqueue("scheduler.task.result", {"success": True}, timeout=5),
        mallory.consume(queue, credit=1),
        mallory.consume("scheduler.task.result", credit=1),
    ):
        with pytest.raises(RemoteError) as refused:
            await attempt
        assert refused.value.code == "denied"
    await mallory.publish(queue, {"task": "evil"})
    assert (await mallory.errors.get(timeout=5)).code == "denied"

    executor = await make_client("executor-user", transport)
    work = await executor.consume(queue, credit=1)
    scheduler = await make_client("scheduler", transport)
    await scheduler.enqueue(queue, {"task": "fine"}, timeout=5)
    delivery = await work.get(timeout=5)
    assert (delivery.envelope.sender, delivery.envelope.payload) == ("scheduler", {"task": "fine"})
    delivery.ack()
    assert scheduler.errors.get_nowait_all() == []
    assert executor.errors.get_nowait_all() == []


CUSTOM_ACL = (
    AclRule(identity="eve", action="*", prefix="secret.", allow=False),
    AclRule(identity="*", action="*", prefix="", allow=True),
)


class CustomBus:
    """A broker with :data:`CUSTOM_ACL`, built the way the ``broker`` fixture builds one."""

    def __init__(self, broker: Broker, keys: KeysDirectory, settings: BusSettings) -> None:
        self.broker = broker
        self.keys = keys
        self.settings = settings
        self.clients: list[BusClient] = []

    async def client(self, identity: str, transport: str) -> BusClient:
        client = await start_client(self.broker, self.keys, self.settings, identity, transport)
        self.clients.append(client)
        return client


@pytest.fixture
async def custom_bus(keys: KeysDirectory, tmp_path: Path) -> AsyncIterator[CustomBus]:
    settings = BusSettings(
        heartbeat_interval_s=0.5, heartbeat_liveness=10, ask_timeout_s=3.0, acl=CUSTOM_ACL
    )
    broker = await start_broker(keys, settings, tmp_path, "acl")
    bus = CustomBus(broker, keys, settings)
    yield bus
    for client in reversed(bus.clients):
        await asyncio.wait_for(client.stop(), 5)
    await asyncio.wait_for(broker.stop(), 5)


async def test_custom_acl_denies_subscribe_serve_consume_and_publish(
    custom_bus: CustomBus, transport: str, caplog: pytest.LogCaptureFixture
) -> None:
    alice = await custom_bus.client("alice", "inproc")
    errors = await alice.subscribe("bus.error")
    secrets = await alice.subscribe("secret.")
    eve = await custom_bus.client("eve", transport)

    for attempt in (
        eve.subscribe("secret."),
        eve.subscribe("public.", "secret.plans"),
        eve.serve("secret."),
        eve.consume("secret.queue"),
    ):
        with pytest.raises(RemoteError) as caught:
            await attempt
        assert caught.value.code == "denied"
        assert "'eve' may not" in caught.value.reason
        event = await errors.get(timeout=5)
        assert (event.payload["code"], event.payload["identity"]) == ("denied", "eve")
    rejects = [r.getMessage() for r in caplog.records if r.getMessage().startswith("bus.reject")]
    assert len(rejects) == 4
    assert all(line.startswith("bus.reject code=denied ") for line in rejects)

    await eve.publish("secret.leak", {})
    assert (await eve.errors.get(timeout=5)).code == "denied"

    # A catch-all subscription is allowed, but events on denied topics are filtered out of it.
    everything = await eve.subscribe("")
    await alice.publish("secret.plans", {"n": 1})
    await alice.publish("public.news", {"n": 2})
    assert (await secrets.get(timeout=5)).topic == "secret.plans"
    seen: list[Envelope] = []
    while not seen or seen[-1].topic != "public.news":
        seen.append(await everything.get(timeout=5))
    assert not [e for e in seen if e.topic.startswith("secret.")], seen

    # The same for requests: eve may serve everything, yet is never handed a secret request.
    await eve.serve("")
    with pytest.raises(RemoteError) as unserved:
        await alice.ask("secret.question", {}, timeout=5)
    assert unserved.value.code == "no_responder"
    assert alice.errors.get_nowait_all() == []


# ---------------------------------------------------------------- key files


@pytest.fixture(params=[0o022, 0o000, 0o077], ids=["umask022", "umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    yield int(request.param)
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secret_key_files_are_private(tmp_path: Path, umask: int) -> None:
    keys = KeysDirectory(tmp_path / f"keys-{umask:o}")
    broker_pair = keys.broker_keypair(create=True)
    client_pair = keys.identity_keypair("worker-1", create=True)

    assert _mode(keys.server_dir / "broker.key_secret") == 0o600
    assert _mode(keys.identities_dir / "worker-1.key_secret") == 0o600
    assert _mode(keys.server_dir / "broker.key") == 0o644
    assert _mode(keys.allowed_dir / "worker-1.key") == 0o644
    assert _mode(keys.identities_dir / "worker-1.key") == 0o644
    assert not list(keys.root.rglob("*.tmp"))
    # Written keys load back; public files hold no secret; the allow-list names the key.
    assert load_keypair(keys.server_dir / "broker.key_secret") == broker_pair
    assert keys.identity_keypair("worker-1") == client_pair
    assert keys.allowed() == {client_pair.public: "worker-1"}
    assert "secret-key" not in (keys.allowed_dir / "worker-1.key").read_text()
    with pytest.raises(AuthError, match="holds no secret key"):
        load_keypair(keys.allowed_dir / "worker-1.key")


def test_secrets_never_print(tmp_path: Path) -> None:
    pair = KeysDirectory(tmp_path / "keys").identity_keypair("worker-1", create=True)
    assert pair.secret.decode() not in repr(pair)
    assert pair.secret.decode() not in str(pair)


async def test_missing_keys_are_auth_errors(tmp_path: Path) -> None:
    keys = KeysDirectory(tmp_path / "empty")
    with pytest.raises(AuthError, match="no broker keypair"):
        keys.broker_keypair()
    with pytest.raises(AuthError, match="no keypair for identity 'ghost'"):
        keys.identity_keypair("ghost")
    with pytest.raises(AuthError, match="must be lowercase"):
        keys.identity_keypair("Ghost", create=True)
    with pytest.raises(AuthError, match="cannot read key file"):
        load_keypair(tmp_path / "nowhere.key_secret")
    assert keys.allowed() == {}
    keyless = Broker(endpoints=["tcp://127.0.0.1:0"], inproc_name=f"keyless-{id(tmp_path)}")
    with pytest.raises(AuthError, match="tcp/ipc endpoints need a keys directory"):
        await keyless.start()
    await asyncio.wait_for(keyless.stop(), 5)


def test_key_files_named_badly_are_not_in_the_allow_list(tmp_path: Path) -> None:
    keys = KeysDirectory(tmp_path / "keys")
    good = keys.identity_keypair("good", create=True)
    stray = write_keypair(tmp_path / "stray", "stray")
    (keys.allowed_dir / "Not Valid.key").write_bytes(
        (tmp_path / "stray" / "stray.key").read_bytes()
    )
    assert keys.allowed() == {good.public: "good"}
    assert stray.public not in keys.allowed()


async def test_a_second_identity_cannot_learn_who_listens_where_it_may_not_publish(
    custom_bus: CustomBus,
) -> None:
    """``watch`` tells whether anyone subscribes under a prefix: eve may not ask it of
    ``secret.`` (she may not publish there), and what she may watch says only yes or no."""
    alice = await custom_bus.client("alice", "inproc")
    await alice.subscribe("secret.", "public.news")
    eve = await custom_bus.client("eve", "tcp")
    with pytest.raises(RemoteError) as caught:
        await eve.watch("secret.")
    assert caught.value.code == "denied"
    assert "'eve' may not publish to 'secret.'" in caught.value.reason
    assert eve.watched == {}
    await eve.watch("public.")
    assert eve.watched == {"public.": True}
