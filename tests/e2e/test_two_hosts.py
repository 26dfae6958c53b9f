"""Several hosts: an actor in another network namespace joins the broker over tcp+CURVE.

The second "host" is a network namespace with its own interface and address, joined to this one
by a veth pair: traffic between them crosses a real (virtual) network link, as between machines.
The keys are exchanged the way docs/deployment.md tells an operator to.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import ActorSystem
from bus import KeysDirectory
from tests.e2e.procs import wait_for_line

ROOT = Path(__file__).resolve().parents[2]
HOST_A, HOST_B = "10.231.7.1", "10.231.7.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def host_b() -> Iterator[str]:
    """A second host: its own network namespace, reachable at HOST_B from HOST_A."""
    name = f"tb-{uuid.uuid4().hex[:8]}"
    veth = f"v{name[3:]}"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", veth, "type", "veth", "peer", "name", f"{veth}b")
        _ip("link", "set", f"{veth}b", "netns", name)
        _ip("addr", "add", f"{HOST_A}/30", "dev", veth)
        _ip("link", "set", veth, "up")
        _ip("netns", "exec", name, "ip", "addr", "add", f"{HOST_B}/30", "dev", f"{veth}b")
        _ip("netns", "exec", name, "ip", "link", "set", f"{veth}b", "up")
        _ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
        yield name
    finally:
        subprocess.run(["ip", "link", "del", veth], check=False, capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)


def _cli(home: Path, *args: str, netns: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "taskbus", "--home", str(home), *args]
    return ["ip", "netns", "exec", netns, *command] if netns else command


def _run(home: Path, *args: str) -> str:
    done = subprocess.run(
        _cli(home, *args), cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


async def test_actor_on_another_host_serves_over_curve(tmp_path: Path, host_b: str) -> None:
    home_a, home_b = tmp_path / "host-a", tmp_path / "host-b"
    _run(home_a, "keys", "init")  # the broker's host
    _run(home_b, "keys", "new", "greeter-b")  # the joining host: a client keypair only
    _run(home_a, "keys", "allow", str(home_b / "keys/identities/greeter-b.key"))
    _run(home_b, "keys", "broker", str(home_a / "keys/server/broker.key"))

    keys_a = KeysDirectory(home_a / "keys")
    system = await ActorSystem.embedded(keys=keys_a, endpoints=[f"tcp://{HOST_A}:0"])
    assert system.broker is not None
    endpoint = system.broker.endpoints[0]
    actor = _start_actor(home_b, host_b, endpoint)
    client = await system.client("app")  # an admin: bus.peers is for admins
    try:
        lines = await asyncio.wait_for(asyncio.to_thread(wait_for_line, actor, "connected", 30), 30)
        assert f"connected to {endpoint} as greeter-b" in lines[-1]
        reply = await client.ask("greeter.hello", {"name": "host A"}, timeout=10)
        assert reply.payload == {"greeting": "hello host A", "from": "greeter-b"}
        assert reply.sender == "greeter-b"  # stamped by the broker from the CURVE key
        peers = (await client.ask("bus.peers", timeout=5)).payload["peers"]
        remote = [p for p in peers if p["identity"] == "greeter-b"]
        # the actor's connection and its system's (liveness) connection, both over CURVE
        assert {p["transport"] for p in remote} == {"remote"}
    finally:
        actor.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(actor.communicate, None, 30)
        await client.stop()
        await system.stop()
    assert actor.returncode == 0, stderr


def _start_actor(home: Path, netns: str, endpoint: str) -> subprocess.Popen[str]:
    command = _cli(
        home,
        "actor",
        "examples.greeter:Greeter",
        "--identity",
        "greeter-b",
        "--connect",
        endpoint,
        netns=netns,
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
