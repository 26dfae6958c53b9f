"""Running actors as a process: the whole system (`taskbus up`) or one (`taskbus actor`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence

from actors.actor import Actor
from actors.health import HealthActor
from actors.scheduling import SchedulerActor
from actors.store.actor import StoreActor
from actors.store.libsql_store import LibsqlStore
from actors.system import ActorSystem, ShutdownReport
from bus import KeysDirectory
from config.errors import TaskbusError
from config.settings import Settings

log = logging.getLogger("taskbus.runner")

ActorFactory = Callable[[], Actor]


def builtin_actors(settings: Settings) -> dict[str, ActorFactory]:
    """The actors ``taskbus actor <name>`` knows, configured by ``settings``."""
    return {
        "health": HealthActor,
        "scheduler": lambda: SchedulerActor(settings.scheduler),
        "store": lambda: StoreActor(LibsqlStore.from_settings(settings)),
    }


def resolve_actor(spec: str, settings: Settings) -> ActorFactory:
    """A built-in actor name, or ``package.module:ClassName`` (made with no arguments)."""
    builtin = builtin_actors(settings)
    if spec in builtin:
        return builtin[spec]
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        known = ", ".join(sorted(builtin))
        raise TaskbusError(f"unknown actor {spec!r}: use a built-in name ({known}) or module:Class")
    if os.getcwd() not in sys.path:  # as `python -m` would: modules of the current directory
        sys.path.insert(0, os.getcwd())
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise TaskbusError(f"cannot load actor {spec!r}: {exc}") from exc
    if not (isinstance(found, type) and issubclass(found, Actor)):
        raise TaskbusError(f"{spec!r} is not an Actor subclass")
    actor_class: type[Actor] = found
    return actor_class


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """An event set by SIGINT or SIGTERM while the block runs.

    Installed before the process says it is ready, so that a signal sent as soon as the ready
    line appears stops it gracefully instead of killing it.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        yield stop
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signum)


async def run_system(
    keys: KeysDirectory, endpoints: Sequence[str], settings: Settings
) -> ShutdownReport:
    """All actors in this process on the embedded broker, until a signal."""
    with stop_signals() as stop:
        return await _run_system(keys, endpoints, settings, stop)


async def _run_system(
    keys: KeysDirectory, endpoints: Sequence[str], settings: Settings, stop: asyncio.Event
) -> ShutdownReport:
    try:
        system = await ActorSystem.embedded(
            keys=keys, endpoints=endpoints, settings=settings.actors, bus_settings=settings.bus
        )
    except Exception as exc:  # zmq.ZMQError for an endpoint in use, among others
        raise TaskbusError(f"cannot listen on {', '.join(endpoints)}: {exc}") from exc
    assert system.broker is not None
    builtin = builtin_actors(settings)
    await system.spawn(builtin["health"])
    store = await system.spawn(builtin["store"])
    _say(f"encrypted store at {settings.paths.database_path} ({store.state})")
    if settings.enabled:
        await system.spawn(builtin["scheduler"])
    else:
        _say("scheduling disabled (enabled = false): no scheduler in this process")
    _say(f"broker listening on {', '.join(system.broker.endpoints)}")
    _say(f"broker public key {keys.server_dir / 'broker.key'}")
    _say(f"actors running: {', '.join(system.status())}")
    await stop.wait()
    log.info("shutting down")
    return await system.stop()


async def run_one_actor(
    spec: str,
    endpoint: str,
    keys: KeysDirectory,
    settings: Settings,
    *,
    identity: str | None = None,
) -> ShutdownReport:
    """One actor in this process, connected to a broker elsewhere, until a signal."""
    with stop_signals() as stop:
        return await _run_one_actor(spec, endpoint, keys, settings, identity=identity, stop=stop)


async def _run_one_actor(
    spec: str,
    endpoint: str,
    keys: KeysDirectory,
    settings: Settings,
    *,
    identity: str | None,
    stop: asyncio.Event,
) -> ShutdownReport:
    factory = resolve_actor(spec, settings)
    probe = factory()
    name = identity or probe.name or type(probe).__name__.lower()
    system = await ActorSystem.connected(
        endpoint, keys, settings=settings.actors, bus_settings=settings.bus, name=name
    )
    supervised = await system.spawn(factory, name=name, identity=name)
    _say(f"actor {supervised.name} ({supervised.state}) connected to {endpoint} as {name}")
    await stop.wait()
    return await system.stop()


def _say(line: str) -> None:
    print(f"taskbus: {line}", file=sys.stderr, flush=True)
