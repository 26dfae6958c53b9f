"""Running actors as a process: the whole system (`taskbus up`) or one (`taskbus actor`)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager

from actors.actor import Actor
from actors.system import ActorSystem, ShutdownReport
from bus import KeysDirectory
from config.errors import TaskbusError
from config.settings import Settings
from taskbus.assembly import ActorFactory, Assembly
from taskbus.embedding import Taskbus

log = logging.getLogger("taskbus.runner")

# What runs beside the actors of `taskbus up` (the HTTP API): a context on the running system.
Beside = Callable[[Taskbus], AbstractAsyncContextManager[object]]


def resolve_actor(spec: str, assembly: Assembly) -> tuple[str, ActorFactory]:
    """The name and factory of a built-in actor, or of ``package.module:ClassName`` (made with
    no arguments; named by its ``name``, else its class name in lower case)."""
    builtin = assembly.factories()
    if spec in builtin:
        return spec, builtin[spec]
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
    return actor_class.name or actor_class.__name__.lower(), actor_class


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


async def run_system(settings: Settings, *, beside: Beside | None = None) -> ShutdownReport:
    """All actors in this process on the embedded broker (``taskbus up``), until a signal;
    ``beside`` (e.g. the HTTP API) runs while they do, entered once they run and left first."""
    with stop_signals() as stop:
        taskbus = Taskbus(settings)
        await taskbus.start()
        try:
            _say_where(taskbus)
            async with beside(taskbus) if beside else contextlib.nullcontext():
                await stop.wait()
            log.info(
                "shutting down: running tasks get %gs to finish (actors.shutdown_deadline_s)",
                settings.actors.shutdown_deadline_s,
            )
        finally:
            report = await taskbus.stop()
        return report


def _say_where(taskbus: Taskbus) -> None:
    settings, system = taskbus.settings, taskbus.system
    keys = taskbus.keys
    if taskbus.first_run:
        _say(f"created CurveZMQ keys in {keys.root}")
    _say(f"data in {settings.paths.data_dir}")
    store_state = system.status()["store"]["state"]
    _say(f"encrypted store at {taskbus.database_path} ({store_state})")
    if not settings.enabled:
        _say("scheduling disabled (enabled = false): no scheduler or executors in this process")
    assert system.broker is not None
    _say(f"broker listening on {', '.join(system.broker.endpoints)}")
    _say(f"broker public key {keys.server_dir / 'broker.key'}")
    _say(f"actors running: {', '.join(system.status())}")


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
    assembly = Assembly(settings)
    spec_name, factory = resolve_actor(spec, assembly)
    name = identity or spec_name
    system = await ActorSystem.connected(
        endpoint, keys, settings=settings.actors, bus_settings=settings.bus, name=name
    )
    supervised = await system.spawn(factory, name=name, identity=name)
    _say(f"actor {supervised.name} ({supervised.state}) connected to {endpoint} as {name}")
    await stop.wait()
    try:
        return await system.stop()
    finally:
        assembly.close()


def _say(line: str) -> None:
    print(f"taskbus: {line}", file=sys.stderr, flush=True)
