"""What an actor hop costs on top of the bare bus: asks and events, inproc and tcp+CURVE.

Run ``python benchmarks/actors.py [--quick]`` from the repository root. It prints a table and, as
its last line, one JSON object.

Everything runs in **one process and one event loop**: an embedded ``ActorSystem`` (its broker
listens on inproc and on tcp loopback with CURVE), the askers and publishers, the bare responders
and readers, and the actors. The tcp rows therefore cross real CURVE-encrypted loopback sockets
(and libzmq's I/O threads) but share one Python thread with the broker, so their absolute figures
are lower than with a process per end (``benchmarks/bus.py`` measures that); the comparison is fair
because both sides of every row run the same way. What differs between the two sides:

- **ask**: a bare ``client.serve()`` loop that ``client.reply()``-es each request, vs an actor whose
  ``@on_request`` handler returns the payload (mailbox -> worker -> dispatch -> reply). Sequential
  asks; the two alternate in blocks of 50 so that drift and noise hit both alike.
- **events**: a bare reader ``await``-ing ``subscription.get()`` per event, vs an actor whose
  ``@on_event`` handler counts them. The publisher stays at most ``--window`` events ahead of
  the receiver, well inside both inboxes (the actor's mailbox and the reader's subscription are
  the same size), so nothing is dropped; drops are reported anyway. Bare and actor runs alternate;
  each row shows the median of the runs (3 in both modes).

The overhead of one hop through the actor runtime is ``actor p50 - bare p50`` for an ask, and
``1/actor rate - 1/bare rate`` for an event, in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# ``python benchmarks/actors.py`` puts this directory first on sys.path, where this very file
# would shadow the ``actors`` package it measures (and ``bus.py`` the ``bus`` package). The
# repository root takes its place, for ``benchmarks._measure``.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
if str(_HERE.parent) not in sys.path:
    sys.path.append(str(_HERE.parent))

from actors import Actor, ActorState, ActorSystem, on_event, on_request  # noqa: E402
from benchmarks._measure import BenchError, Meter, median_by, percentile, print_aligned  # noqa: E402
from bus import BusClient, Envelope, KeysDirectory, Subscription  # noqa: E402
from bus.envelope import Payload  # noqa: E402
from config.actors import ActorSettings  # noqa: E402
from config.bus import BusSettings  # noqa: E402

PAYLOAD_BYTES = 200
PAYLOAD: dict[str, Any] = {"data": "x" * PAYLOAD_BYTES}
TRANSPORTS = ("inproc", "tcp")
VARIANTS = ("bare", "actor")
MAILBOX = 10_000  # the actor's mailbox and the bare reader's subscription alike
PACE_STEP = 500  # a paced publisher checks how far ahead it is every this many events
IDLE_S = 2.0  # a receiver that got nothing for this long is done


@dataclass(frozen=True, slots=True)
class Plan:
    asks_per_block: int
    ask_rounds: int  # blocks per (transport, variant); bare and actor alternate block by block
    ask_warmup: int
    events: int  # per run; the first tenth is the warm-up
    event_runs: int  # the median run is reported
    window: int
    phase_timeout_s: float


QUICK = Plan(
    asks_per_block=50,
    ask_rounds=80,
    ask_warmup=200,
    events=80_000,
    event_runs=3,
    window=2_000,
    phase_timeout_s=20.0,
)
FULL = Plan(
    asks_per_block=50,
    ask_rounds=400,
    ask_warmup=1_000,
    events=300_000,
    event_runs=3,
    window=2_000,
    phase_timeout_s=90.0,
)


# --------------------------------------------------------------------------- the two sides


def echo_actor(topic: str) -> type[Actor]:
    class Echo(Actor):
        name = "bench-echo"

        @on_request(topic)
        async def echo(self, request: Envelope) -> Payload:
            return request.payload

    return Echo


def sink_actor(topic: str, meter: Meter) -> Actor:
    class Sink(Actor):
        name = "bench-sink"

        @on_event(topic)
        async def seen(self, event: Envelope) -> None:
            meter.add()

    return Sink()


async def bare_responder(client: BusClient, inbox: Subscription) -> None:
    async for request in inbox:
        client.reply(request, request.payload)


async def bare_reader(inbox: Subscription, meter: Meter) -> None:
    async for _ in inbox:
        meter.add()


@dataclass(slots=True)
class Bench:
    """The running system and one client (and one connected actor system) per transport."""

    system: ActorSystem
    remote: ActorSystem  # actors over tcp+CURVE, in this process
    keys: KeysDirectory
    bus_settings: BusSettings
    clients: list[BusClient]
    tasks: list[asyncio.Task[None]]

    async def client(self, identity: str, transport: str) -> BusClient:
        broker = self.system.broker
        assert broker is not None
        if transport == "inproc":
            client = BusClient(
                broker.inproc_endpoint,
                identity=identity,
                context=broker.context,
                settings=self.bus_settings,
            )
        else:
            endpoint = next(e for e in broker.endpoints if e.startswith("tcp://"))
            client = BusClient(
                endpoint,
                identity=identity,
                keypair=self.keys.identity_keypair(identity, create=True),
                server_key=self.keys.broker_public_key(),
                settings=self.bus_settings,
            )
        await client.start()
        self.clients.append(client)
        return client

    def actors_over(self, transport: str) -> ActorSystem:
        return self.system if transport == "inproc" else self.remote

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.wait_for(self.remote.stop(deadline_s=1.0), 10)
        for client in self.clients:  # inproc clients share the broker's context: close first
            await asyncio.wait_for(client.stop(), 5)
        await asyncio.wait_for(self.system.stop(deadline_s=1.0), 10)


async def open_bench(root: Path) -> Bench:
    keys = KeysDirectory(root / "keys")
    keys.broker_keypair(create=True)
    for identity in ("bench-tcp", "bench-echo", "bench-sink"):
        keys.identity_keypair(identity, create=True)
    bus_settings = BusSettings()
    settings = ActorSettings(mailbox_size=MAILBOX)
    system = await ActorSystem.embedded(
        settings=settings,
        bus_settings=bus_settings,
        keys=keys,
        endpoints=["tcp://127.0.0.1:0"],
        name="bench",
    )
    assert system.broker is not None
    endpoint = next(e for e in system.broker.endpoints if e.startswith("tcp://"))
    remote = await ActorSystem.connected(
        endpoint, keys, settings=settings, bus_settings=bus_settings, name="bench-tcp"
    )
    return Bench(system, remote, keys, bus_settings, [], [])


# --------------------------------------------------------------------------- phases


async def spawn(
    system: ActorSystem, factory: Callable[[], Actor], *, name: str, identity: str
) -> None:
    """Spawn, and fail the benchmark unless the actor is up (over tcp its keys must exist)."""
    supervised = await system.spawn(factory, name=name, identity=identity)
    if supervised.state != ActorState.RUNNING:
        raise BenchError(f"actor {name} did not start: {supervised.reason}")


async def timed_asks(asker: BusClient, topic: str, count: int) -> list[float]:
    samples = []
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await asker.ask(topic, PAYLOAD, timeout=5)
        samples.append(clock() - started)
    return samples


async def phase_asks(bench: Bench, plan: Plan) -> dict[str, dict[str, Any]]:
    askers: dict[str, BusClient] = {}
    topics: dict[tuple[str, str], str] = {}
    for transport in TRANSPORTS:
        askers[transport] = await bench.client(f"bench-asker-{transport}", transport)
        bare = await bench.client(f"bench-bare-{transport}", transport)
        topics[transport, "bare"] = f"bench.ask.bare.{transport}"
        inbox = await bare.serve(topics[transport, "bare"], maxsize=MAILBOX)
        bench.tasks.append(asyncio.create_task(bare_responder(bare, inbox)))
        topics[transport, "actor"] = f"bench.ask.actor.{transport}"
        await spawn(
            bench.actors_over(transport),
            echo_actor(topics[transport, "actor"]),
            name=f"bench-echo-{transport}",
            identity="bench-echo",
        )
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in topics}
    deadline = time.monotonic() + plan.phase_timeout_s
    for (transport, _), topic in topics.items():
        await timed_asks(askers[transport], topic, plan.ask_warmup)
    for _ in range(plan.ask_rounds):
        for (transport, variant), topic in topics.items():
            if time.monotonic() > deadline:
                raise BenchError(f"asks did not finish within {plan.phase_timeout_s}s")
            samples[transport, variant] += await timed_asks(
                askers[transport], topic, plan.asks_per_block
            )
    results: dict[str, dict[str, Any]] = {}
    for (transport, variant), values in samples.items():
        ordered = sorted(values)
        results[f"{variant}_{transport}"] = {
            "count": len(ordered),
            "p50_us": round(percentile(ordered, 0.50) * 1e6, 1),
            "p90_us": round(percentile(ordered, 0.90) * 1e6, 1),
            "p99_us": round(percentile(ordered, 0.99) * 1e6, 1),
            "mean_us": round(statistics.fmean(ordered) * 1e6, 1),
        }
    return results


async def one_event_run(
    bench: Bench, publisher: BusClient, transport: str, variant: str, *, run: int, plan: Plan
) -> dict[str, Any]:
    # the first tenth is the warm-up; the clock starts at the event after it
    meter = Meter(warmup=plan.events // 10 + 1)
    topic = f"bench.events.{variant}.{transport}.r{run}"
    dropped: Any
    if variant == "actor":
        system = bench.actors_over(transport)
        name = f"bench-sink-{transport}-{run}"
        await spawn(system, lambda: sink_actor(topic, meter), name=name, identity="bench-sink")

        def dropped() -> int:
            return int(system.status()[name].get("mailbox_dropped", 0))

    else:
        reader = await bench.client(f"bench-reader-{transport}-{run}", transport)
        inbox = await reader.subscribe(topic, maxsize=MAILBOX)
        bench.tasks.append(asyncio.create_task(bare_reader(inbox, meter)))

        def dropped() -> int:
            return inbox.dropped

    before = (await publisher.ask("bus.stats", timeout=5)).payload["dropped_events"]
    deadline = time.monotonic() + plan.phase_timeout_s
    started = time.perf_counter()
    for sent in range(plan.events):
        if sent % PACE_STEP == 0:
            while sent - meter.count > plan.window:
                if time.monotonic() > deadline:
                    raise BenchError(f"{variant} {transport}: publisher stuck at {sent:,}")
                await asyncio.sleep(0.0002)
        await publisher.publish(topic, PAYLOAD)
    last, last_count = time.monotonic(), meter.count
    while meter.count < plan.events and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        if meter.count != last_count:
            last, last_count = time.monotonic(), meter.count
        elif time.monotonic() - last > IDLE_S:
            break
    after = (await publisher.ask("bus.stats", timeout=5)).payload["dropped_events"]
    return {
        "sent": plan.events,
        "received": meter.count,
        "events_s": round(meter.rate()),
        "seconds": round(time.perf_counter() - started, 3),
        "inbox_dropped": dropped(),
        "broker_dropped_events": after - before,
    }


async def phase_events(bench: Bench, plan: Plan) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {}
    for transport in TRANSPORTS:
        publisher = await bench.client(f"bench-publisher-{transport}", transport)
        for run in range(plan.event_runs):
            for variant in VARIANTS:
                result = await one_event_run(
                    bench, publisher, transport, variant, run=run, plan=plan
                )
                runs.setdefault(f"{variant}_{transport}", []).append(result)
    return runs


async def run_all(plan: Plan) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="taskbus-bench-actors-") as tmp:
        bench = await open_bench(Path(tmp))
        try:
            asks = await phase_asks(bench, plan)
            events = await phase_events(bench, plan)
        finally:
            await bench.close()
    return {"asks": asks, "events": events}


# --------------------------------------------------------------------------- report


def event_overhead_us(bare_rate: float, actor_rate: float) -> float | None:
    """The extra time per event: 1/actor rate - 1/bare rate."""
    if not (bare_rate and actor_rate):
        return None
    return round(1e6 / actor_rate - 1e6 / bare_rate, 2)


def summarize(mode: str, plan: Plan, measured: dict[str, Any]) -> dict[str, Any]:
    asks, events = measured["asks"], measured["events"]
    summary: dict[str, Any] = {"benchmark": "taskbus.actors", "mode": mode}
    for transport in TRANSPORTS:
        suffix = "" if transport == "inproc" else "_tcp_curve"
        bare, actor = asks[f"bare_{transport}"], asks[f"actor_{transport}"]
        bare_rate = median_by(events[f"bare_{transport}"], "events_s")["events_s"]
        actor_rate = median_by(events[f"actor_{transport}"], "events_s")["events_s"]
        summary.update(
            {
                f"bare_ask{suffix}_p50_us": bare["p50_us"],
                f"bare_ask{suffix}_p99_us": bare["p99_us"],
                f"actor_ask{suffix}_p50_us": actor["p50_us"],
                f"actor_ask{suffix}_p99_us": actor["p99_us"],
                f"actor_hop_overhead{suffix}_us": round(actor["p50_us"] - bare["p50_us"], 1),
                f"bare_events{suffix}_s": bare_rate,
                f"actor_events{suffix}_s": actor_rate,
                f"actor_event_overhead{suffix}_us": event_overhead_us(bare_rate, actor_rate),
            }
        )
    lossless = all(r["received"] == r["sent"] for rs in events.values() for r in rs)
    summary.update(
        {
            "events_lossless": lossless,
            "payload_bytes": PAYLOAD_BYTES,
            "cpus": os.cpu_count(),
            "topology": "one process, one event loop; tcp rows over CURVE loopback",
            "plan": asdict(plan),
            "runs": measured,
        }
    )
    return summary


def print_table(summary: dict[str, Any]) -> None:
    runs = summary["runs"]
    header = ("measurement", "transport", "bare", "actor", "actor overhead", "detail")
    rows: list[tuple[str, ...]] = []
    for transport in TRANSPORTS:
        suffix = "" if transport == "inproc" else "_tcp_curve"
        label = "inproc" if transport == "inproc" else "tcp+CURVE"
        asks = runs["asks"]
        for quantile in ("p50", "p99"):
            bare = summary[f"bare_ask{suffix}_{quantile}_us"]
            actor = summary[f"actor_ask{suffix}_{quantile}_us"]
            rows.append(
                (
                    f"ask round trip {quantile} (us)",
                    label,
                    f"{bare:,.1f}",
                    f"{actor:,.1f}",
                    f"{actor - bare:+,.1f} us/hop",
                    f"{asks[f'actor_{transport}']['count']:,} sequential asks each"
                    if quantile == "p50"
                    else (
                        f"p90 {asks[f'bare_{transport}']['p90_us']:,.0f} / "
                        f"{asks[f'actor_{transport}']['p90_us']:,.0f} us"
                    ),
                )
            )
        bare_run = median_by(runs["events"][f"bare_{transport}"], "events_s")
        actor_run = median_by(runs["events"][f"actor_{transport}"], "events_s")
        overhead = summary[f"actor_event_overhead{suffix}_us"]
        rows.append(
            (
                "events (events/s)",
                label,
                f"{bare_run['events_s']:,}",
                f"{actor_run['events_s']:,}",
                "n/a" if overhead is None else f"{overhead:+,.2f} us/hop",
                f"recv/sent {bare_run['received']:,}/{bare_run['sent']:,} and "
                f"{actor_run['received']:,}/{actor_run['sent']:,}, drops (inbox+broker) "
                f"{bare_run['inbox_dropped'] + bare_run['broker_dropped_events']} and "
                f"{actor_run['inbox_dropped'] + actor_run['broker_dropped_events']}",
            )
        )
    print_aligned(header, rows)
    print(
        f"\n{summary['mode']} mode, {summary['seconds']} s, {summary['cpus']} cpus; "
        f"{summary['topology']}; events lossless: {summary['events_lossless']}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (< 30 s)")
    args = parser.parse_args(argv)
    plan, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    started = time.monotonic()
    try:
        measured = asyncio.run(run_all(plan))
    except (BenchError, TimeoutError) as exc:
        print(f"benchmark failed: {exc!r}", file=sys.stderr)
        print(json.dumps({"benchmark": "taskbus.actors", "mode": mode, "error": repr(exc)}))
        return 1
    summary = summarize(mode, plan, measured)
    summary["seconds"] = round(time.monotonic() - started, 1)
    print_table(summary)
    print(json.dumps(summary, separators=(",", ":"), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
