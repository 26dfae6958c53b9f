"""Running actors as a process: the whole system (`taskbus up`) or one (`taskbus actor`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Sequence

from actors.actor import Actor
from actors.health import HealthActor
from actors.store.actor import StoreActor
from actors.store.libsql_store import LibsqlStore
from actors.system import ActorSystem, ShutdownReport
from bus import KeysDirectory
from config.actors import ActorSettings
from config.bus import BusSettings
from config.errors import TaskbusError
from config.settings import Settings

log = logging.getLogger("taskbus.runner")

BUILTIN_ACTORS: dict[str, type[Actor]] = {"health": HealthActor}


def resolve_actor(spec: str) -> type[Actor]:
    """A built-in actor name, or ``package.module:ClassName``."""
    if spec in BUILTIN_ACTORS:
        return BUILTIN_ACTORS[spec]
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        known = ", ".join(sorted(BUILTIN_ACTORS))
        raise TaskbusError(f"unknown actor {spec!r}: use a built-in name ({known}) or module:Class")
    if os.getcwd() not in sys.path:  # as `python -m` would: modules of the current directory
        sys.path.insert(0, os.getcwd())
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise TaskbusError(f"cannot load actor {spec!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Actor)):
        raise TaskbusError(f"{spec!r} is not an Actor subclass")
    return found


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


async def run_system(
    keys: KeysDirectory, endpoints: Sequence[str], settings: Settings
) -> ShutdownReport:
    """All actors in this process on the embedded broker, until a signal."""
    try:
        system = await ActorSystem.embedded(
            keys=keys, endpoints=endpoints, settings=settings.actors, bus_settings=settings.bus
        )
    except Exception as exc:  # zmq.ZMQError for an endpoint in use, among others
        raise TaskbusError(f"cannot listen on {', '.join(endpoints)}: {exc}") from exc
    assert system.broker is not None
    await system.spawn(HealthActor)
    store = await system.spawn(lambda: StoreActor(LibsqlStore.from_settings(settings)))
    _say(f"encrypted store at {settings.paths.database_path} ({store.state})")
    _say(f"broker listening on {', '.join(system.broker.endpoints)}")
    _say(f"broker public key {keys.server_dir / 'broker.key'}")
    _say(f"actors running: {', '.join(system.status())}")
    await until_signalled()
    log.info("shutting down")
    return await system.stop()


async def run_one_actor(
    spec: str,
    endpoint: str,
    keys: KeysDirectory,
    *,
    identity: str | None = None,
    settings: ActorSettings | None = None,
    bus_settings: BusSettings | None = None,
) -> ShutdownReport:
    """One actor in this process, connected to a broker elsewhere, until a signal."""
    actor_class = resolve_actor(spec)
    name = identity or actor_class.name or actor_class.__name__.lower()
    system = await ActorSystem.connected(
        endpoint, keys, settings=settings, bus_settings=bus_settings, name=name
    )
    supervised = await system.spawn(actor_class, name=name, identity=name)
    _say(f"actor {supervised.name} ({supervised.state}) connected to {endpoint} as {name}")
    await until_signalled()
    return await system.stop()


def _say(line: str) -> None:
    print(f"taskbus: {line}", file=sys.stderr, flush=True)
