"""Throughput and latency of the taskbus message bus, against raw ZeroMQ ceilings.

Run ``python benchmarks/bus.py [--quick]`` from the repository root. It prints a table and, as
its last line, one JSON object. Every tcp path spreads its ends over real OS processes (spawned
with ``multiprocessing``); the inproc path runs broker and clients in one process, which is what
inproc means. Rates are measured at the receiver: messages counted after a warm-up, divided by the
time from the first counted to the last received message.

Rows:

1. raw pyzmq PUB->SUB over tcp (blocking sockets, batch receiving), without and with CURVE;
2. pyzmq's C ``zmq.proxy`` (XSUB/XPUB) in its own process, tcp+CURVE on both sides;
3. the taskbus broker with publisher and subscriber on inproc, in the broker's process;
4. the taskbus broker over tcp+CURVE, broker, publisher and subscriber in three processes
   (the broker always requires CURVE on tcp: there is no plain-tcp broker row);
5. sequential asks through the broker over tcp+CURVE (p50/p99), next to a raw DEALER->ROUTER
   echo over tcp+CURVE;
6. a work queue with confirmations and acks over tcp+CURVE (producer and consumer processes).

``--profile DIR`` runs every child process under cProfile and writes ``DIR/<child>.prof``; pick
the phases with ``--only``. See README.md for the other options.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

import zmq

# ``python benchmarks/bus.py`` puts this directory first on sys.path, where this very file would
# shadow the ``bus`` package it measures (in this process and in every spawned child, which
# inherits this sys.path). The repository root takes its place, for ``benchmarks._measure``.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from benchmarks._measure import BenchError, Meter, median_by, percentile, print_aligned  # noqa: E402
from bus import Broker, BusClient, BusError, KeysDirectory  # noqa: E402
from bus.subscription import Inbox  # noqa: E402
from config.bus import BusSettings  # noqa: E402

PAYLOAD_BYTES = 200
RAW_MESSAGE = b"bench.raw " + b"x" * PAYLOAD_BYTES
RAW_TOPIC = b"bench."
PAYLOAD: dict[str, Any] = {"data": "x" * PAYLOAD_BYTES}
PUB_TOPIC = "bench.pub.data"
ASK_TOPIC = "bench.ask.echo"
QUEUE_NAME = "bench.queue.work"
RAW_HWM = 2_000_000  # deep enough that the raw ceilings never drop at the high-water mark
IDLE_S = 4.0  # receivers wait this long for more: longer than the 3 s liveness window
PROCESS_START_S = 20.0  # spawning a child and importing pyzmq on a loaded 2-core machine
PUB_WINDOW = 50_000  # a paced publisher stays at most this many events ahead of the receiver
PACE_STEP = 1_000  # ... and checks how far ahead it is every this many events
PACE_SLEEP_S = 0.0005

TARGETS = {
    "broker_tcp_curve_msgs_s": ">= 100,000 msg/s and >= 0.3 x proxy",
    "ask_tcp_curve_p50_us": "<= 300 us",
    "ask_tcp_curve_p99_us": "<= 1,000 us",
    "queue_tcp_curve_msgs_s": ">= 20,000 msg/s",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """Message counts per phase; the first ``count // 10`` received are the warm-up."""

    raw: int
    raw_curve: int
    proxy: int
    inproc: int
    tcp: int
    asks: int
    queue: int
    repeat: int
    phase_timeout_s: float
    queue_window: int = 2_000
    queue_credit: int = 500

    def scaled(self, factor: float) -> Plan:
        counts = ("raw", "raw_curve", "proxy", "inproc", "tcp", "asks", "queue")
        return replace(
            self, **{name: max(100, int(getattr(self, name) * factor)) for name in counts}
        )


QUICK = Plan(
    raw=400_000,
    raw_curve=300_000,
    proxy=200_000,
    inproc=100_000,
    tcp=100_000,
    asks=2_000,
    queue=40_000,
    repeat=1,
    phase_timeout_s=15.0,
)
FULL = Plan(
    raw=2_000_000,
    raw_curve=1_000_000,
    proxy=1_000_000,
    inproc=400_000,
    tcp=500_000,
    asks=20_000,
    queue=200_000,
    repeat=3,
    phase_timeout_s=90.0,
)


# --------------------------------------------------------------------------- measuring


def warmup_of(count: int) -> int:
    return count // 10


# --------------------------------------------------------------------------- child plumbing


Target = Callable[[Connection, dict[str, Any]], None]


def _child(target: Target, conn: Connection, spec: dict[str, Any]) -> None:
    """Entry point of every spawned child: report an exception instead of dying silently."""
    profiler = cProfile.Profile() if spec.get("profile_path") else None
    try:
        if profiler is None:
            target(conn, spec)
        else:
            profiler.runcall(target, conn, spec)
    except BaseException:
        with contextlib.suppress(OSError):
            conn.send(("error", traceback.format_exc()))
        raise
    finally:
        if profiler is not None:
            profiler.dump_stats(spec["profile_path"])
        conn.close()


class Child:
    """One spawned process and the parent's end of its pipe."""

    profile_dir: Path | None = None  # set by --profile: every child writes <dir>/<name>.prof

    def __init__(self, name: str, target: Target, spec: dict[str, Any]) -> None:
        mp = multiprocessing.get_context("spawn")
        if Child.profile_dir is not None:
            Child.profile_dir.mkdir(parents=True, exist_ok=True)
            spec = {**spec, "profile_path": str(Child.profile_dir / f"{name}.prof")}
        self.name = name
        self.conn, child_end = mp.Pipe()
        self.process: BaseProcess = mp.Process(
            target=_child, args=(target, child_end, spec), name=name, daemon=True
        )
        self.process.start()
        child_end.close()

    def expect(self, kind: str, deadline: float) -> tuple[Any, ...]:
        """The next message of ``kind`` from the child, or :class:`BenchError` at the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"{self.name}: no {kind!r} before the deadline")
            if self.conn.poll(min(remaining, 0.2)):
                try:
                    message: tuple[Any, ...] = self.conn.recv()
                except EOFError:
                    raise BenchError(f"{self.name}: exited before sending {kind!r}") from None
                if message[0] == "error":
                    raise BenchError(f"{self.name} failed:\n{message[1]}")
                if message[0] != kind:
                    raise BenchError(f"{self.name}: expected {kind!r}, got {message[0]!r}")
                return message
            if not self.process.is_alive() and not self.conn.poll(0):
                raise BenchError(
                    f"{self.name}: exited (code {self.process.exitcode}) before sending {kind!r}"
                )

    def send(self, *message: Any) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(message)

    def close(self, grace_s: float = 2.0) -> None:
        """Ask the child to stop, then terminate and finally kill it; never leaves it running."""
        if self.conn.closed:
            return
        self.send("stop")
        self.process.join(grace_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(2.0)
        self.conn.close()


Start = Callable[[str, Target, dict[str, Any]], Child]


@contextlib.contextmanager
def children() -> Iterator[Start]:
    """Start children with the yielded function; all are stopped when the block exits."""
    started: list[Child] = []

    def start(name: str, target: Target, spec: dict[str, Any]) -> Child:
        child = Child(name, target, spec)
        started.append(child)
        return child

    try:
        yield start
    finally:
        for child in reversed(started):
            child.close()


def wait_stop(conn: Connection, timeout_s: float) -> None:
    """In a blocking child: wait for the parent's "stop" (or its death, or the timeout)."""
    with contextlib.suppress(EOFError, OSError):
        if conn.poll(timeout_s):
            conn.recv()


async def recv_async(conn: Connection, timeout_s: float) -> tuple[Any, ...] | None:
    """In an asyncio child: the parent's next message without blocking the event loop."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(conn.fileno(), ready.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), timeout_s)
        if not ready.is_set():
            return None
        try:
            message: tuple[Any, ...] = conn.recv()
        except EOFError:
            return ("stop",)
        return message
    finally:
        loop.remove_reader(conn.fileno())


# --------------------------------------------------------------------------- raw ZeroMQ children


def _curve_server(sock: zmq.Socket[bytes], keys: dict[str, bytes] | None) -> None:
    if keys is not None:
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys["server_public"])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys["server_secret"])


def _curve_client(sock: zmq.Socket[bytes], keys: dict[str, bytes] | None, who: str) -> None:
    if keys is not None:
        sock.setsockopt(zmq.CURVE_SERVERKEY, keys["server_public"])
        sock.setsockopt(zmq.CURVE_PUBLICKEY, keys[f"{who}_public"])
        sock.setsockopt(zmq.CURVE_SECRETKEY, keys[f"{who}_secret"])


def raw_subscriber(conn: Connection, spec: dict[str, Any]) -> None:
    """A blocking SUB socket: binds (as the CURVE server) or connects to a proxy, then counts."""
    context = zmq.Context()
    sock = context.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, RAW_HWM)
    sock.setsockopt(zmq.SUBSCRIBE, RAW_TOPIC)
    if spec.get("connect"):
        _curve_client(sock, spec["keys"], "sub")
        sock.connect(spec["connect"])
        conn.send(("ready", ""))
    else:
        _curve_server(sock, spec["keys"])
        sock.bind("tcp://127.0.0.1:0")
        conn.send(("ready", sock.getsockopt_string(zmq.LAST_ENDPOINT)))
    count, warmup = spec["count"], warmup_of(spec["count"])
    meter = Meter(warmup)
    recv = sock.recv
    deadline = time.monotonic() + spec["deadline_s"]
    idle_ms = int(IDLE_S * 1000)
    while meter.count < count and time.monotonic() < deadline:
        if not sock.poll(idle_ms if meter.count else int(spec["deadline_s"] * 1000)):
            break
        received = 0
        with contextlib.suppress(zmq.Again):
            # batch receiving: drain what is there without blocking, time the batch once
            for _ in range(min(count - meter.count, 10_000)):
                recv(zmq.NOBLOCK)
                received += 1
        meter.add(received)
    conn.send(("result", meter.result()))
    sock.close(0)
    context.term()


def raw_publisher(conn: Connection, spec: dict[str, Any]) -> None:
    """An XPUB socket (a PUB that hears subscriptions): sends once the subscriber is live."""
    context = zmq.Context()
    sock = context.socket(zmq.XPUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, RAW_HWM)
    sock.setsockopt(zmq.RCVTIMEO, int(PROCESS_START_S * 1000))
    _curve_client(sock, spec["keys"], "pub")
    sock.connect(spec["connect"])
    subscription = sock.recv()  # the subscription arrived: the whole path is live
    if subscription != b"\x01" + RAW_TOPIC:
        raise BenchError(f"unexpected subscription message {subscription!r}")
    send = sock.send
    started = time.perf_counter()
    for _ in range(spec["count"]):
        send(RAW_MESSAGE)
    conn.send(("sent", spec["count"], time.perf_counter() - started))
    wait_stop(conn, spec["deadline_s"])
    sock.close(0)
    context.term()


def raw_proxy(conn: Connection, spec: dict[str, Any]) -> None:
    """pyzmq's C proxy, XSUB <- publishers, XPUB -> subscribers; CURVE server on both.

    The proxy runs in a thread; this one waits for the parent's "stop" and steers it to an end.
    """
    context = zmq.Context()
    front = context.socket(zmq.XSUB)
    back = context.socket(zmq.XPUB)
    for sock, option in ((front, zmq.RCVHWM), (back, zmq.SNDHWM)):
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(option, RAW_HWM)
        _curve_server(sock, spec["keys"])
        sock.bind("tcp://127.0.0.1:0")
    control = context.socket(zmq.PAIR)
    control.bind("inproc://proxy-control")
    steer = context.socket(zmq.PAIR)
    steer.connect("inproc://proxy-control")
    proxy = threading.Thread(target=zmq.proxy_steerable, args=(front, back, None, control))
    proxy.start()
    conn.send(
        (
            "ready",
            front.getsockopt_string(zmq.LAST_ENDPOINT),
            back.getsockopt_string(zmq.LAST_ENDPOINT),
        )
    )
    wait_stop(conn, spec["deadline_s"])
    steer.send(b"TERMINATE")
    proxy.join(5)
    for sock in (front, back, control, steer):
        sock.close(0)
    context.term()


def raw_echo(conn: Connection, spec: dict[str, Any]) -> None:
    """A blocking ROUTER that returns every message to its sender (tcp+CURVE)."""
    context = zmq.Context()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    _curve_server(sock, spec["keys"])
    sock.bind("tcp://127.0.0.1:0")
    conn.send(("ready", sock.getsockopt_string(zmq.LAST_ENDPOINT)))
    poller = zmq.Poller()
    poller.register(sock, zmq.POLLIN)
    poller.register(conn.fileno(), zmq.POLLIN)  # the parent's "stop"
    while True:
        events = dict(poller.poll(1000))
        if sock in events:
            sock.send_multipart(sock.recv_multipart())
        elif events:
            break
    sock.close(0)
    context.term()


def raw_pinger(conn: Connection, spec: dict[str, Any]) -> None:
    """Sequential DEALER round trips to :func:`raw_echo`, after a warm-up."""
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, int(PROCESS_START_S * 1000))
    _curve_client(sock, spec["keys"], "pub")
    sock.connect(spec["connect"])
    count = spec["count"]
    samples: list[float] = []
    clock = time.perf_counter_ns
    for index in range(warmup_of(count) + count):
        started = clock()
        sock.send(RAW_MESSAGE)
        sock.recv()
        if index >= warmup_of(count):
            samples.append((clock() - started) / 1000)
    conn.send(("result", latency_summary(samples)))
    sock.close(0)
    context.term()


def latency_summary(samples_us: list[float]) -> dict[str, Any]:
    ordered = sorted(samples_us)
    if not ordered:
        return {"count": 0}
    return {
        "count": len(ordered),
        "p50_us": round(percentile(ordered, 0.50), 1),
        "p90_us": round(percentile(ordered, 0.90), 1),
        "p99_us": round(percentile(ordered, 0.99), 1),
        "max_us": round(ordered[-1], 1),
        "mean_us": round(statistics.fmean(ordered), 1),
    }


# --------------------------------------------------------------------------- taskbus children


class StallMonitor:
    """The longest time the event loop was kept from a timer, i.e. busy without yielding."""

    def __init__(self, tick_s: float = 0.005) -> None:
        self._tick_s = tick_s
        self._max_s = 0.0
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self._tick_s)
            self._max_s = max(self._max_s, time.monotonic() - started - self._tick_s)

    def take(self) -> float:
        """Milliseconds of the longest stall since the last call."""
        value, self._max_s = self._max_s, 0.0
        return round(value * 1000, 1)

    def close(self) -> None:
        self._task.cancel()


def _settings() -> BusSettings:
    return BusSettings()


def _remote_client(spec: dict[str, Any], identity: str) -> BusClient:
    keys = KeysDirectory(Path(spec["keys_root"]))
    return BusClient(
        spec["endpoint"],
        identity=identity,
        keypair=keys.identity_keypair(identity),
        server_key=keys.broker_public_key(),
        settings=_settings(),
    )


class Progress(Protocol):
    """Events received so far, shared by subscriber and publisher (a ``RawValue("q")``)."""

    value: int


def new_progress() -> Progress:
    progress: Progress = multiprocessing.get_context("spawn").RawValue("q", 0)
    return progress


def meter_pushes(inbox: Inbox[Any], meter: Meter, progress: Progress, stride: int = 64) -> None:
    """Time events as the client hands them to ``inbox``, every ``stride``-th one.

    The application cannot be the clock here: the client decodes up to 512 frames, each holding
    thousands of events, before the application's task runs again, so the application wakes up
    for a few bursts of tens of thousands of events (see README.md).
    """
    push = inbox.push
    pending = 0

    def metered(item: Any) -> bool:
        nonlocal pending
        accepted = push(item)
        if not accepted:  # a full inbox drops the event: it was not received
            return False
        pending += 1
        if pending == stride:
            meter.add(stride)
            progress.value = meter.count
            pending = 0
        return accepted

    inbox.push = metered  # type: ignore[method-assign]


async def receive_events(
    subscription: Inbox[Any], count: int, deadline_s: float, progress: Progress
) -> dict[str, Any]:
    """Count events until ``count`` arrived, the stream went idle, or the deadline passed."""
    meter = Meter(warmup_of(count))
    meter_pushes(subscription, meter, progress)
    received = 0
    deadline = time.monotonic() + deadline_s + IDLE_S  # the sender stops at deadline_s
    while received < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            await subscription.get(timeout=min(IDLE_S, remaining) if received else remaining)
        except TimeoutError:
            break
        received += 1 + len(subscription.get_nowait_all())
    return {**meter.result(), "received": received, "inbox_dropped": subscription.dropped}


async def publish_events(
    client: BusClient, count: int, progress: Progress, window: int | None, deadline_s: float
) -> tuple[int, float]:
    """Publish up to ``count`` events; with a ``window``, stay at most that far ahead of the
    receiver. Returns how many were published (fewer if the deadline passed) and in what time.

    Without a window the publisher only meets the client's own backpressure (its Python output
    queue), which does not see what libzmq has buffered: that is the open-loop burst.
    """
    started = time.perf_counter()
    deadline = time.monotonic() + deadline_s
    publish = client.publish
    for index in range(count):
        if index % PACE_STEP == 0 and window is not None:
            # the receiver may be another process: shared memory, no event to await
            while index - progress.value > window:
                if time.monotonic() > deadline:
                    return index, time.perf_counter() - started
                await asyncio.sleep(PACE_SLEEP_S)
        await publish(PUB_TOPIC, PAYLOAD)
    return count, time.perf_counter() - started


def inproc_pubsub(conn: Connection, spec: dict[str, Any]) -> None:
    """Broker, publisher and subscriber in this one process, clients on inproc."""
    conn.send(("result", asyncio.run(_inproc_pubsub(spec))))


async def _inproc_pubsub(spec: dict[str, Any]) -> dict[str, Any]:
    broker = Broker(settings=_settings(), inproc_name="bench-inproc")
    await broker.start()
    stalls = StallMonitor()
    clients: list[BusClient] = []
    try:
        for identity in ("bench-sub", "bench-pub"):
            client = BusClient(
                broker.inproc_endpoint,
                identity=identity,
                context=broker.context,
                settings=_settings(),
            )
            await client.start()
            clients.append(client)
        subscriber, publisher = clients
        subscription = await subscriber.subscribe("bench.pub.", maxsize=spec["inbox"])
        progress = new_progress()
        count, deadline_s = spec["count"], spec["deadline_s"]
        receiving = asyncio.create_task(receive_events(subscription, count, deadline_s, progress))
        sent, publish_s = await publish_events(
            publisher, count, progress, spec["window"], deadline_s
        )
        return {
            **(await receiving),
            "sent": sent,
            "publish_s": round(publish_s, 3),
            "broker_dropped_events": broker.stats()["dropped_events"],
            "reconnects": sum(c.counters["reconnects"] for c in clients),
            "max_loop_stall_ms": stalls.take(),
        }
    finally:
        stalls.close()
        for client in reversed(clients):
            await asyncio.wait_for(client.stop(), 5)
        await asyncio.wait_for(broker.stop(), 5)


def tcp_broker(conn: Connection, spec: dict[str, Any]) -> None:
    """The taskbus broker on tcp+CURVE; answers "stats" until told to "stop"."""
    asyncio.run(_tcp_broker(conn, spec))


async def _tcp_broker(conn: Connection, spec: dict[str, Any]) -> None:
    broker = Broker(
        settings=_settings(),
        keys=KeysDirectory(Path(spec["keys_root"])),
        endpoints=["tcp://127.0.0.1:0"],
        inproc_name="bench-tcp",
    )
    await broker.start()
    stalls = StallMonitor()
    try:
        conn.send(("ready", broker.endpoints[0]))
        while True:
            message = await recv_async(conn, spec["deadline_s"])
            if message is None or message[0] == "stop":
                return
            if message[0] == "stats":
                stats = {
                    **broker.stats(),
                    "max_loop_stall_ms": stalls.take(),
                    "cpu_s": time.process_time(),  # its libzmq I/O thread (CURVE) included
                }
                conn.send(("stats", stats))
    finally:
        stalls.close()
        await asyncio.wait_for(broker.stop(), 5)


def bus_subscriber(conn: Connection, spec: dict[str, Any]) -> None:
    asyncio.run(_bus_subscriber(conn, spec))


async def _bus_subscriber(conn: Connection, spec: dict[str, Any]) -> None:
    client = _remote_client(spec, "bench-sub")
    await client.start()
    try:
        subscription = await client.subscribe("bench.pub.", maxsize=spec["inbox"])
        conn.send(("ready",))
        result = await receive_events(
            subscription, spec["count"], spec["deadline_s"], spec["progress"]
        )
        conn.send(("result", {**result, "reconnects": client.counters["reconnects"]}))
    finally:
        await asyncio.wait_for(client.stop(), 5)


def bus_publisher(conn: Connection, spec: dict[str, Any]) -> None:
    asyncio.run(_bus_publisher(conn, spec))


async def _bus_publisher(conn: Connection, spec: dict[str, Any]) -> None:
    client = _remote_client(spec, "bench-pub")
    await client.start()
    try:
        sent, publish_s = await publish_events(
            client, spec["count"], spec["progress"], spec["window"], spec["deadline_s"]
        )
        conn.send(("sent", sent, publish_s))
        await recv_async(conn, spec["deadline_s"])  # keeps flushing until the parent asks
        conn.send(("reconnects", client.counters["reconnects"]))
    finally:
        await asyncio.wait_for(client.stop(), 5)


def bus_responder(conn: Connection, spec: dict[str, Any]) -> None:
    asyncio.run(_bus_responder(conn, spec))


async def _bus_responder(conn: Connection, spec: dict[str, Any]) -> None:
    client = _remote_client(spec, "bench-responder")
    await client.start()
    try:
        inbox = await client.serve("bench.ask.")

        async def answer() -> None:
            while True:
                request = await inbox.get()
                client.reply(request, {"ok": True})
                for request in inbox.get_nowait_all():
                    client.reply(request, {"ok": True})

        answering = asyncio.create_task(answer())
        conn.send(("ready",))
        await recv_async(conn, spec["deadline_s"])
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await answering
    finally:
        await asyncio.wait_for(client.stop(), 5)


def bus_asker(conn: Connection, spec: dict[str, Any]) -> None:
    asyncio.run(_bus_asker(conn, spec))


async def _bus_asker(conn: Connection, spec: dict[str, Any]) -> None:
    client = _remote_client(spec, "bench-asker")
    await client.start()
    try:
        count = spec["count"]
        samples: list[float] = []
        clock = time.perf_counter_ns
        deadline = time.monotonic() + spec["deadline_s"]
        failed = 0
        for index in range(warmup_of(count) + count):
            if time.monotonic() > deadline:
                break
            started = clock()
            try:
                await client.ask(ASK_TOPIC, PAYLOAD, timeout=5.0)
            except BusError:
                failed += 1
                continue
            if index >= warmup_of(count):
                samples.append((clock() - started) / 1000)
        conn.send(("result", {**latency_summary(samples), "failed": failed}))
    finally:
        await asyncio.wait_for(client.stop(), 5)


def bus_consumer(conn: Connection, spec: dict[str, Any]) -> None:
    asyncio.run(_bus_consumer(conn, spec))


async def _bus_consumer(conn: Connection, spec: dict[str, Any]) -> None:
    client = _remote_client(spec, "bench-consumer")
    await client.start()
    try:
        consumer = await client.consume(QUEUE_NAME, credit=spec["credit"])
        conn.send(("ready",))
        count = spec["count"]
        meter = Meter(warmup_of(count))
        redelivered = 0
        deadline = time.monotonic() + spec["deadline_s"] + IDLE_S  # the producer stops earlier
        while meter.count < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                first = await consumer.get(
                    timeout=min(IDLE_S, remaining) if meter.count else remaining
                )
            except TimeoutError:
                break
            batch = [first, *consumer.get_nowait_all()]
            for delivery in batch:
                delivery.ack()
                if delivery.attempt > 1:
                    redelivered += 1
            meter.add(len(batch))
        await asyncio.sleep(0.05)  # let the last acks go out before the client stops
        conn.send(("result", {**meter.result(), "redelivered": redelivered}))
    finally:
        await asyncio.wait_for(client.stop(), 5)


def bus_producer(conn: Connection, spec: dict[str, Any]) -> None:
    asyncio.run(_bus_producer(conn, spec))


async def _bus_producer(conn: Connection, spec: dict[str, Any]) -> None:
    client = _remote_client(spec, "bench-producer")
    await client.start()
    try:
        window = spec["window"]
        outstanding = 0
        failed = 0
        room = asyncio.Event()

        def confirmed(future: asyncio.Future[bytes]) -> None:
            nonlocal outstanding, failed
            outstanding -= 1
            if future.cancelled() or future.exception() is not None:
                failed += 1
            if outstanding < window:
                room.set()

        async def room_for(limit: int) -> bool:
            """Wait until fewer than ``limit`` confirmations are outstanding; False at deadline."""
            while outstanding >= limit:
                room.clear()
                try:
                    await asyncio.wait_for(room.wait(), max(0.001, deadline - time.monotonic()))
                except TimeoutError:
                    return False
            return True

        started = time.perf_counter()
        deadline = time.monotonic() + spec["deadline_s"]
        enqueue = client.enqueue_nowait
        sent = 0
        while sent < spec["count"] and (outstanding < window or await room_for(window)):
            enqueue(QUEUE_NAME, PAYLOAD).add_done_callback(confirmed)
            outstanding += 1
            sent += 1
        await room_for(1)
        elapsed = time.perf_counter() - started
        conn.send(("sent", sent, elapsed, failed + outstanding))
        await recv_async(conn, spec["deadline_s"])  # acks may still bring DONE notices
    finally:
        await asyncio.wait_for(client.stop(), 5)


# --------------------------------------------------------------------------- phases (parent)


def curve_keys() -> dict[str, bytes]:
    keys: dict[str, bytes] = {}
    for who in ("server", "pub", "sub"):
        keys[f"{who}_public"], keys[f"{who}_secret"] = zmq.curve_keypair()
    return keys


def phase_raw(plan: Plan, count: int, curve: bool) -> dict[str, Any]:
    keys = curve_keys() if curve else None
    deadline = time.monotonic() + plan.phase_timeout_s + PROCESS_START_S
    spec = {"keys": keys, "count": count, "deadline_s": plan.phase_timeout_s + PROCESS_START_S}
    with children() as start:
        subscriber = start("raw-sub", raw_subscriber, spec)
        endpoint = subscriber.expect("ready", deadline)[1]
        publisher = start("raw-pub", raw_publisher, {**spec, "connect": endpoint})
        _, sent, _ = publisher.expect("sent", deadline)
        result: dict[str, Any] = subscriber.expect("result", deadline)[1]
    return {**result, "sent": sent}


def phase_proxy(plan: Plan, count: int) -> dict[str, Any]:
    keys = curve_keys()
    deadline = time.monotonic() + plan.phase_timeout_s + PROCESS_START_S
    spec = {"keys": keys, "count": count, "deadline_s": plan.phase_timeout_s + PROCESS_START_S}
    with children() as start:
        proxy = start("proxy", raw_proxy, spec)
        _, front, back = proxy.expect("ready", deadline)
        subscriber = start("proxy-sub", raw_subscriber, {**spec, "connect": back})
        subscriber.expect("ready", deadline)
        publisher = start("proxy-pub", raw_publisher, {**spec, "connect": front})
        _, sent, _ = publisher.expect("sent", deadline)
        result: dict[str, Any] = subscriber.expect("result", deadline)[1]
    return {**result, "sent": sent}


def phase_rtt(plan: Plan, count: int) -> dict[str, Any]:
    keys = curve_keys()
    deadline = time.monotonic() + plan.phase_timeout_s + PROCESS_START_S
    spec = {"keys": keys, "count": count}
    with children() as start:
        echo = start("echo", raw_echo, spec)
        endpoint = echo.expect("ready", deadline)[1]
        pinger = start("pinger", raw_pinger, {**spec, "connect": endpoint})
        result: dict[str, Any] = pinger.expect("result", deadline)[1]
    return result


def phase_inproc(plan: Plan, inbox: int, window: int | None) -> dict[str, Any]:
    deadline = time.monotonic() + plan.phase_timeout_s + PROCESS_START_S
    spec = {
        "count": plan.inproc,
        "deadline_s": plan.phase_timeout_s,
        "inbox": inbox,
        "window": window,
    }
    with children() as start:
        child = start("inproc", inproc_pubsub, spec)
        result: dict[str, Any] = child.expect("result", deadline)[1]
    return result


def broker_stats(broker: Child, deadline: float) -> dict[str, Any]:
    broker.send("stats")
    stats: dict[str, Any] = broker.expect("stats", deadline)[1]
    return stats


def phase_tcp_pubsub(
    plan: Plan,
    start: Start,
    broker: Child,
    base: dict[str, Any],
    *,
    inbox: int,
    window: int | None,
) -> dict[str, Any]:
    deadline = time.monotonic() + plan.phase_timeout_s + PROCESS_START_S
    before = broker_stats(broker, deadline)["dropped_events"]  # also resets the stall monitor
    spec = {
        **base,
        "count": plan.tcp,
        "deadline_s": plan.phase_timeout_s,
        "inbox": inbox,
        "window": window,
        "progress": new_progress(),
    }
    subscriber = start("bus-sub", bus_subscriber, spec)
    subscriber.expect("ready", deadline)
    publisher = start("bus-pub", bus_publisher, spec)
    _, sent, publish_s = publisher.expect("sent", deadline)
    result: dict[str, Any] = subscriber.expect("result", deadline)[1]
    publisher.send("report")
    publisher_reconnects = publisher.expect("reconnects", deadline)[1]
    publisher.close()
    subscriber.close()
    after = broker_stats(broker, deadline)
    dropped = after["dropped_events"] - before
    return {
        **result,
        "broker_max_loop_stall_ms": after["max_loop_stall_ms"],
        "sent": sent,
        "window": window,
        "publish_s": round(publish_s, 3),
        "broker_dropped_events": dropped,
        "reconnects": result["reconnects"] + publisher_reconnects,
    }


def phase_tcp_ask(plan: Plan, start: Start, broker: Child, base: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + plan.phase_timeout_s + PROCESS_START_S
    cpu_before = broker_stats(broker, deadline)["cpu_s"]  # also resets the stall monitor
    spec = {**base, "count": plan.asks, "deadline_s": plan.phase_timeout_s}
    responder = start("bus-responder", bus_responder, spec)
    responder.expect("ready", deadline)
    asker = start("bus-asker", bus_asker, spec)
    result: dict[str, Any] = asker.expect("result", deadline)[1]
    asker.close()
    responder.close()
    after = broker_stats(broker, deadline)
    asks = warmup_of(plan.asks) + plan.asks
    return {
        **result,
        "broker_max_loop_stall_ms": after["max_loop_stall_ms"],
        # Steadier than latency on a shared machine: the broker's CPU per ask, both of its
        # messages, while responder and asker start, work and stop (their start-up is idle time).
        "broker_cpu_us_per_ask": round((after["cpu_s"] - cpu_before) / asks * 1e6, 1),
    }


def phase_tcp_queue(
    plan: Plan, start: Start, broker: Child, base: dict[str, Any]
) -> dict[str, Any]:
    deadline = time.monotonic() + plan.phase_timeout_s + PROCESS_START_S
    broker_stats(broker, deadline)  # resets the stall monitor
    spec = {
        **base,
        "count": plan.queue,
        "deadline_s": plan.phase_timeout_s,
        "window": plan.queue_window,
        "credit": plan.queue_credit,
    }
    consumer = start("bus-consumer", bus_consumer, spec)
    consumer.expect("ready", deadline)
    producer = start("bus-producer", bus_producer, spec)
    _, sent, produce_s, failed = producer.expect("sent", deadline)
    result: dict[str, Any] = consumer.expect("result", deadline)[1]
    producer.close()
    consumer.close()
    after = broker_stats(broker, deadline)
    return {
        **result,
        "sent": sent,
        "produce_s": round(produce_s, 3),
        "enqueue_failed": failed,
        "window": plan.queue_window,
        "credit": plan.queue_credit,
        "broker_queue": after["queues"].get(QUEUE_NAME, {}),
        "broker_max_loop_stall_ms": after["max_loop_stall_ms"],
    }


PHASES = ("raw", "raw_curve", "proxy", "inproc", "rtt", "tcp", "queue", "ask")


@dataclass(frozen=True, slots=True)
class Options:
    inbox: int = 1_000_000
    window: int = PUB_WINDOW
    open_loop: bool = True
    phases: tuple[str, ...] = PHASES


def tcp_phases(plan: Plan, options: Options) -> dict[str, list[dict[str, Any]]]:
    """One broker process serves the pub/sub, queue and ask phases, in turn."""
    runs: dict[str, list[dict[str, Any]]] = {}
    wanted = [p for p in ("tcp", "queue", "ask") if p in options.phases]
    if not wanted:
        return runs
    with tempfile.TemporaryDirectory(prefix="taskbus-bench-") as tmp, children() as start:
        keys = KeysDirectory(Path(tmp) / "keys")
        keys.broker_keypair(create=True)
        for identity in (
            "bench-pub",
            "bench-sub",
            "bench-asker",
            "bench-responder",
            "bench-producer",
            "bench-consumer",
        ):
            keys.identity_keypair(identity, create=True)
        broker_spec = {
            "keys_root": str(keys.root),
            "deadline_s": 10 * plan.phase_timeout_s,
        }
        broker = start("tcp-broker", tcp_broker, broker_spec)
        endpoint = broker.expect("ready", time.monotonic() + PROCESS_START_S)[1]
        base = {"keys_root": str(keys.root), "endpoint": endpoint}
        for _ in range(plan.repeat):
            if "tcp" in wanted:
                run = phase_tcp_pubsub(
                    plan, start, broker, base, inbox=options.inbox, window=options.window
                )
                runs.setdefault("tcp", []).append(run)
            if "queue" in wanted:
                runs.setdefault("queue", []).append(phase_tcp_queue(plan, start, broker, base))
        if "tcp" in wanted and options.open_loop:
            run = phase_tcp_pubsub(plan, start, broker, base, inbox=options.inbox, window=None)
            runs["tcp_open"] = [run]
        if "ask" in wanted:
            runs["ask"] = [phase_tcp_ask(plan, start, broker, base)]
        runs["broker_stats"] = [broker_stats(broker, time.monotonic() + PROCESS_START_S)]
    return runs


def run_phases(plan: Plan, options: Options) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    phases = options.phases
    for _ in range(plan.repeat):
        if "raw" in phases:
            runs.setdefault("raw", []).append(phase_raw(plan, plan.raw, curve=False))
        if "raw_curve" in phases:
            runs.setdefault("raw_curve", []).append(phase_raw(plan, plan.raw_curve, curve=True))
        if "proxy" in phases:
            runs.setdefault("proxy", []).append(phase_proxy(plan, plan.proxy))
        if "inproc" in phases:
            run = phase_inproc(plan, options.inbox, options.window)
            runs.setdefault("inproc", []).append(run)
    if "inproc" in phases and options.open_loop:
        runs["inproc_open"] = [phase_inproc(plan, options.inbox, None)]
    if "rtt" in phases:
        runs["rtt"] = [phase_rtt(plan, plan.asks)]
    runs.update(tcp_phases(plan, options))
    return runs


# --------------------------------------------------------------------------- report


@dataclass(slots=True)
class Row:
    name: str
    value: float | None
    unit: str
    vs_raw: float | None = None
    vs_proxy: float | None = None
    target: str = ""
    detail: str = ""


def median_run(runs: dict[str, list[dict[str, Any]]], name: str) -> dict[str, Any]:
    """The run of phase ``name`` with the median rate (the lower median for an even count)."""
    return median_by(runs.get(name, []), "msgs_s")


def ratio(value: float | None, reference: float | None) -> float | None:
    return round(value / reference, 3) if value is not None and reference else None


def throughput_detail(runs: dict[str, list[dict[str, Any]]], name: str) -> str:
    run = median_run(runs, name)
    parts = [f"recv/sent {run.get('received', 0):,}/{run.get('sent', 0):,}"]
    if "window" in run:
        window = run["window"]
        parts.append("open loop" if window is None else f"publisher window {window:,}")
    for key, label in (
        ("broker_dropped_events", "broker drops"),
        ("inbox_dropped", "inbox drops"),
        ("reconnects", "reconnects"),
        ("broker_max_loop_stall_ms", "broker loop stall max ms"),
        ("max_loop_stall_ms", "loop stall max ms"),
    ):
        if key in run:
            parts.append(f"{label} {run[key]:,}")
    if len(runs[name]) > 1:
        parts.append("runs " + "/".join(f"{r['msgs_s'] / 1000:.0f}k" for r in runs[name]))
    return ", ".join(parts)


def build_report(
    mode: str, plan: Plan, options: Options, runs: dict[str, list[dict[str, Any]]]
) -> tuple[list[Row], dict[str, Any]]:
    def rate(name: str) -> float | None:
        run = median_run(runs, name)
        return run.get("msgs_s") if run else None

    def latency(name: str, key: str) -> float | None:
        value: float | None = runs[name][0].get(key) if name in runs else None
        return value

    raw, proxy = rate("raw"), rate("proxy")
    tcp, queue = rate("tcp"), rate("queue")
    rtt_p50, rtt_p99 = latency("rtt", "p50_us"), latency("rtt", "p99_us")
    ask_p50, ask_p99 = latency("ask", "p50_us"), latency("ask", "p99_us")
    rows: list[Row] = []

    def throughput(label: str, name: str, vs_proxy: bool, target: str = "") -> None:
        if name in runs:
            value = rate(name)
            rows.append(
                Row(
                    label,
                    value,
                    "msg/s",
                    ratio(value, raw),
                    ratio(value, proxy) if vs_proxy else None,
                    target,
                    throughput_detail(runs, name),
                )
            )

    throughput("raw PUB->SUB tcp (ceiling)", "raw", False)
    throughput("raw PUB->SUB tcp+CURVE", "raw_curve", False)
    throughput("zmq.proxy tcp+CURVE (ceiling)", "proxy", True)
    throughput("broker inproc pub/sub", "inproc", True)
    throughput("broker inproc pub/sub, open loop", "inproc_open", True)
    if "tcp" in runs:
        rows.append(
            Row("broker tcp (plain)", None, "", detail="n/a: the broker requires CURVE on tcp")
        )
    throughput("broker tcp+CURVE pub/sub", "tcp", True, TARGETS["broker_tcp_curve_msgs_s"])
    throughput("broker tcp+CURVE pub/sub, open loop", "tcp_open", True)
    if "rtt" in runs:
        rtt = runs["rtt"][0]
        rows.append(
            Row(
                "raw DEALER<->ROUTER rtt tcp+CURVE p50",
                rtt_p50,
                "us",
                detail=f"p99 {rtt_p99:,.0f} us, {rtt['count']:,} blocking round trips",
            )
        )
    if "ask" in runs:
        ask = runs["ask"][0]
        rows.append(
            Row(
                "ask tcp+CURVE p50",
                ask_p50,
                "us",
                ratio(ask_p50, rtt_p50),
                target=TARGETS["ask_tcp_curve_p50_us"],
                detail=(
                    f"{ask['count']:,} sequential asks, {ask['failed']} failed; "
                    "vs raw: / raw rtt p50 (an ask is 2 round trips)"
                ),
            )
        )
        rows.append(
            Row(
                "ask tcp+CURVE p99",
                ask_p99,
                "us",
                ratio(ask_p99, rtt_p99),
                target=TARGETS["ask_tcp_curve_p99_us"],
                detail=(
                    f"p90 {ask['p90_us']:,.0f} us, max {ask['max_us']:,.0f} us, "
                    f"broker loop stall max ms {ask['broker_max_loop_stall_ms']}, "
                    f"broker CPU {ask['broker_cpu_us_per_ask']:,.0f} us per ask"
                ),
            )
        )
    if "queue" in runs:
        run = median_run(runs, "queue")
        samples = "/".join(f"{r['msgs_s'] / 1000:.0f}k" for r in runs["queue"])
        rows.append(
            Row(
                "queue tcp+CURVE enqueue->ack",
                queue,
                "msg/s",
                ratio(queue, raw),
                target=TARGETS["queue_tcp_curve_msgs_s"],
                detail=(
                    f"acked/sent {run['received']:,}/{run['sent']:,}, "
                    f"window {plan.queue_window:,}, credit {plan.queue_credit:,}, "
                    f"redelivered {run['redelivered']:,}, "
                    f"broker loop stall max ms {run['broker_max_loop_stall_ms']}"
                    + (f", runs {samples}" if len(runs["queue"]) > 1 else "")
                ),
            )
        )

    dropped_tcp = sum(
        r["broker_dropped_events"] for r in runs.get("tcp", []) + runs.get("tcp_open", [])
    )
    dropped_inproc = sum(
        r["broker_dropped_events"] for r in runs.get("inproc", []) + runs.get("inproc_open", [])
    )
    broker_final = runs.get("broker_stats", [{}])[0]

    def lossless(name: str) -> bool:
        return all(r["received"] == r["sent"] for r in runs.get(name, []))

    tcp_vs_proxy = ratio(tcp, proxy)
    met = {  # None: not measured; a rate with lost messages meets nothing
        "broker_tcp_curve_msgs_s": None if tcp is None else tcp >= 100_000 and lossless("tcp"),
        "broker_tcp_curve_vs_proxy": None if tcp_vs_proxy is None else tcp_vs_proxy >= 0.3,
        "ask_tcp_curve_p50_us": None if ask_p50 is None else ask_p50 <= 300,
        "ask_tcp_curve_p99_us": None if ask_p99 is None else ask_p99 <= 1_000,
        "queue_tcp_curve_msgs_s": None if queue is None else queue >= 20_000 and lossless("queue"),
    }
    summary: dict[str, Any] = {
        "benchmark": "taskbus.bus",
        "mode": mode,
        "payload_bytes": PAYLOAD_BYTES,
        "repeat": plan.repeat,
        "cpus": os.cpu_count(),
        "ceiling_raw_tcp_msgs_s": raw,
        "ceiling_raw_tcp_curve_msgs_s": rate("raw_curve"),
        "ceiling_proxy_tcp_curve_msgs_s": proxy,
        "ceiling_rtt_tcp_curve_p50_us": rtt_p50,
        "ceiling_rtt_tcp_curve_p99_us": rtt_p99,
        "broker_inproc_msgs_s": rate("inproc"),
        "broker_inproc_open_loop_msgs_s": rate("inproc_open"),
        "broker_tcp_curve_msgs_s": tcp,
        "broker_tcp_curve_open_loop_msgs_s": rate("tcp_open"),
        "ask_tcp_curve_p50_us": ask_p50,
        "ask_tcp_curve_p99_us": ask_p99,
        "ask_broker_cpu_us": runs["ask"][0]["broker_cpu_us_per_ask"] if "ask" in runs else None,
        "queue_tcp_curve_msgs_s": queue,
        "ratio_raw_curve_vs_raw": ratio(rate("raw_curve"), raw),
        "ratio_proxy_vs_raw": ratio(proxy, raw),
        "ratio_broker_inproc_vs_raw": ratio(rate("inproc"), raw),
        "ratio_broker_inproc_vs_proxy": ratio(rate("inproc"), proxy),
        "ratio_broker_tcp_curve_vs_raw": ratio(tcp, raw),
        "ratio_broker_tcp_curve_vs_proxy": ratio(tcp, proxy),
        "ratio_queue_vs_raw": ratio(queue, raw),
        "ratio_ask_p50_vs_raw_rtt": ratio(ask_p50, rtt_p50),
        "ratio_ask_p99_vs_raw_rtt": ratio(ask_p99, rtt_p99),
        "messages": {  # the counts behind each headline figure (its median run)
            name: {"received": run["received"], "sent": run["sent"]}
            if "received" in run
            else {"round_trips": run.get("count", 0), "failed": run.get("failed", 0)}
            for name in runs
            if name != "broker_stats" and (run := median_run(runs, name))
        },
        "broker_dropped_events": dropped_tcp + dropped_inproc,
        "broker_dropped_events_tcp": dropped_tcp,
        "broker_dropped_events_inproc": dropped_inproc,
        "broker_tcp_final_stats": broker_final,
        "targets_met": met,
        "publisher_window": options.window,
        "subscriber_inbox": options.inbox,
        "plan": asdict(plan),
        "runs": runs,
    }
    return rows, summary


def print_table(rows: list[Row], summary: dict[str, Any]) -> None:
    header = ("measurement", "value", "unit", "vs raw", "vs proxy", "target", "detail")
    lines = [
        (
            row.name,
            "n/a" if row.value is None else f"{row.value:,.0f}",
            row.unit,
            "" if row.vs_raw is None else f"{row.vs_raw:.3f}",
            "" if row.vs_proxy is None else f"{row.vs_proxy:.3f}",
            row.target,
            row.detail,
        )
        for row in rows
    ]
    print_aligned(header, lines)
    print(
        f"\nbroker dropped events {summary['broker_dropped_events']:,} "
        f"(tcp {summary['broker_dropped_events_tcp']:,}, "
        f"inproc {summary['broker_dropped_events_inproc']:,}); "
        f"targets met {summary['targets_met']}; "
        f"{summary['mode']} mode, {summary['repeat']} run(s) per throughput row (median shown), "
        f"{summary['seconds']} s, {summary['cpus']} cpus"
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run (< 30 s)")
    parser.add_argument(
        "--only",
        metavar="PHASES",
        help=f"comma-separated subset of {','.join(PHASES)} (for profiling)",
    )
    parser.add_argument(
        "--window",
        type=int,
        default=PUB_WINDOW,
        help=f"how far a paced publisher may run ahead of the subscriber (default {PUB_WINDOW:,})",
    )
    parser.add_argument(
        "--queue-window", type=int, help="outstanding enqueue confirmations (default 2,000)"
    )
    parser.add_argument("--credit", type=int, help="consumer credit (default 500)")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every message count by this"
    )
    parser.add_argument(
        "--no-open-loop", action="store_true", help="skip the unpaced pub/sub bursts"
    )
    parser.add_argument(
        "--inbox",
        type=int,
        default=1_000_000,
        help="subscriber inbox size (the client's default is 10,000)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="cProfile every child process into DIR/<child>.prof"
    )
    args = parser.parse_args(argv)
    phases = tuple(args.only.split(",")) if args.only else PHASES
    if unknown := set(phases) - set(PHASES):
        parser.error(f"unknown phases {sorted(unknown)}; choose from {', '.join(PHASES)}")
    options = Options(
        inbox=args.inbox,
        window=args.window,
        open_loop=not args.no_open_loop,
        phases=phases,
    )
    if args.profile:
        Child.profile_dir = Path(args.profile)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    if args.queue_window:
        plan = replace(plan, queue_window=args.queue_window)
    if args.credit:
        plan = replace(plan, queue_credit=args.credit)
    if args.scale != 1.0:
        plan = plan.scaled(args.scale)
        mode += f" x{args.scale:g}"
    started = time.monotonic()
    try:
        runs = run_phases(plan, options)
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        print(json.dumps({"benchmark": "taskbus.bus", "mode": mode, "error": str(exc)}))
        return 1
    rows, summary = build_report(mode, plan, options, runs)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print_table(rows, summary)
    print(json.dumps(summary, separators=(",", ":"), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
