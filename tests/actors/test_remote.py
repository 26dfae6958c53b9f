"""An actor in its own OS process (``taskbus actor ... --connect tcp://...``) talks to in-process
actors over tcp+CURVE with real keys, and stops gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from actors import Actor, ActorSystem, on_event, on_request
from bus import Envelope, KeysDirectory
from bus.envelope import Payload
from tests.actors.conftest import ClientFactory
from tests.actors.kit import spawn_instance
from tests.bus.waits import eventually, peers
from tests.conftest import endpoint_for

ROOT = Path(__file__).resolve().parents[2]


class Local(Actor):
    """The in-process side: answers the remote actor, asks it, and hears its events."""

    name = "local"
    concurrency = 4

    def __init__(self) -> None:
        super().__init__()
        self.heard: asyncio.Queue[Envelope] = asyncio.Queue()

    @on_request("local.echo")
    async def echo(self, request: Envelope) -> Payload:
        return {"local": dict(request.payload), "asker": request.sender}

    @on_request("local.ping")
    async def ping(self, request: Envelope) -> Payload:
        reply = await self.ask("remote.echo", {"ping": 1}, timeout=5)
        return {"remote_said": dict(reply.payload)}

    @on_event("remote.")
    async def hear(self, event: Envelope) -> None:
        self.heard.put_nowait(event)

    async def next_heard(self, topic: str) -> Envelope:
        while True:
            event = await asyncio.wait_for(self.heard.get(), 10)
            if event.topic == topic:
                return event


@contextlib.asynccontextmanager
async def remote_actor(
    home: Path, endpoint: str, identity: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """``taskbus --home HOME actor tests.actors.sample:Remote`` as a child; yields it once it
    said it is connected, with its stderr lines (collected until it exits)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "taskbus",
        "--home",
        str(home),
        "actor",
        "tests.actors.sample:Remote",
        "--connect",
        endpoint,
        "--identity",
        identity,
        cwd=ROOT,
        stdin=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []
    connected = asyncio.Event()

    async def collect() -> None:
        assert process.stderr is not None
        async for raw in process.stderr:
            lines.append(raw.decode(errors="replace").rstrip("\n"))
            if "connected to" in lines[-1]:
                connected.set()

    collector = asyncio.create_task(collect())
    try:
        try:
            await asyncio.wait_for(connected.wait(), 30)
        except TimeoutError:
            raise AssertionError("the child never said 'connected':\n" + "\n".join(lines)) from None
        yield process, lines
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await asyncio.wait_for(process.wait(), 10)
        await asyncio.wait_for(collector, 10)


async def test_an_actor_in_another_process_exchanges_messages_and_stops_gracefully(
    system: ActorSystem, make_client: ClientFactory, keys: KeysDirectory
) -> None:
    assert system.broker is not None
    keys.identity_keypair("remote", create=True)
    local = await spawn_instance(system, Local)
    client = await make_client("tester")
    endpoint = endpoint_for(system.broker, "tcp")

    async with remote_actor(keys.root.parent, endpoint, "remote") as (process, lines):
        assert any(f"actor remote (running) connected to {endpoint} as remote" in x for x in lines)
        remote_peers = [p for p in await peers(client) if p["identity"] == "remote"]
        assert {p["transport"] for p in remote_peers} == {"remote"}, remote_peers  # CURVE-named

        # in-process -> remote: the local actor asks the remote one
        reply = await client.ask("local.ping")
        assert reply.payload == {
            "remote_said": {"echo": {"ping": 1}, "asker": "local", "pid": process.pid}
        }

        # remote -> in-process: the remote actor asks back and publishes
        relayed = await client.ask("remote.relay")
        assert relayed.sender == "remote"
        assert relayed.payload == {"local_said": {"local": {"from": "remote"}, "asker": "remote"}}
        event = await local.next_heard("remote.relayed")
        assert event.sender == "remote"
        assert event.payload == {"answer": relayed.payload["local_said"]}

        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), 15)
        goodbye = await local.next_heard("remote.stopped")  # published from its on_stop
        assert goodbye.payload == {"pid": process.pid}

    assert returncode == 0, "\n".join(lines)
    assert not any("Traceback" in line for line in lines), "\n".join(lines)

    async def left() -> bool:
        return not any(p["identity"] == "remote" for p in await peers(client))

    await eventually(left, "the remote actor said goodbye to the broker")
    assert (await client.ask("local.echo", {"still": "here"})).payload["local"] == {"still": "here"}
