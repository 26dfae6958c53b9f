"""taskbus inside the host application's event loop: what ``taskbus up`` runs, as an API.

::

    async with Taskbus(load_settings(), task_modules=["myapp.tasks"]) as taskbus:
        client = await taskbus.client()
        await client.create("user.reflect", "myapp.tasks:Reflect", "0 23 * * *")
        await host_application_runs_until_shutdown()

``start`` creates the data directory, the CURVE keys and the encrypted database on first run,
starts the broker in this loop (inproc for the actors, plus ``bus.endpoints`` and the ipc socket
in the data directory for other processes), the health and store actors, and, unless
``enabled = false``, the scheduler and one executor per enabled category. ``stop`` shuts them
down by :class:`StopRank`: the scheduler (its lease released), then the executors (their runs
drained for ``actors.shutdown_deadline_s``), then the store, then health. One process per data
directory: ``start`` takes its lock (:mod:`taskbus.instance`) first and ``stop`` lets it go.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from actors.supervision import StopRank
from actors.system import ActorState, ActorSystem, ShutdownReport
from bus import KeysDirectory
from bus.broker import CannotListen
from config.errors import TaskbusError
from config.settings import Settings
from taskbus.assembly import Assembly
from taskbus.client import TaskbusClient
from taskbus.instance import InstanceLock, InUse

log = logging.getLogger("taskbus")


def prepare_home(settings: Settings) -> tuple[KeysDirectory, bool]:
    """The data directory (mode 0700), the broker's keypair and the ``cli`` identity, created
    if missing; the keys and whether this was the first run."""
    data_dir = settings.paths.data_dir
    (data_dir / "run").mkdir(parents=True, exist_ok=True, mode=0o700)  # the ipc socket's home
    data_dir.chmod(0o700)
    keys = KeysDirectory(settings.paths.keys_dir)
    first_run = not (keys.server_dir / "broker.key_secret").exists()
    keys.broker_keypair(create=True)
    keys.identity_keypair("cli", create=True)
    return keys, first_run


class Taskbus:
    """All of taskbus's actors in the running event loop; an async context manager."""

    def __init__(
        self,
        settings: Settings,
        *,
        task_modules: Sequence[str] = (),
        endpoints: Sequence[str] | None = None,
    ) -> None:
        """``task_modules`` are added to ``scheduler.task_modules``; ``endpoints`` replace
        ``bus.endpoints`` plus the ipc socket (``()``: inproc only, no other process can join)."""
        if task_modules:
            scheduler = dataclasses.replace(
                settings.scheduler,
                task_modules=(*settings.scheduler.task_modules, *task_modules),
            )
            settings = dataclasses.replace(settings, scheduler=scheduler)
        self.settings = settings
        self.endpoints = (
            [*settings.endpoints, settings.paths.ipc_endpoint]
            if endpoints is None
            else list(endpoints)
        )
        self.keys = KeysDirectory(settings.paths.keys_dir)
        self.first_run = False
        self._system: ActorSystem | None = None
        self._assembly: Assembly | None = None
        self._lock: InstanceLock | None = None

    @property
    def system(self) -> ActorSystem:
        if self._system is None:
            raise TaskbusError("taskbus is not running: call start() first")
        return self._system

    @property
    def database_path(self) -> Path:
        return self.settings.paths.database_path

    async def start(self) -> Taskbus:
        if self._system is not None:
            raise TaskbusError("taskbus is already running")
        lock = InstanceLock(self.settings.paths.data_dir)
        lock.acquire(self.endpoints)  # before keys, sockets or the store: InUse if taken
        try:
            self.keys, self.first_run = prepare_home(self.settings)
            assembly = Assembly(self.settings)  # imports the task modules: fails before listening
        except BaseException:
            lock.release()
            raise
        try:
            system = await ActorSystem.embedded(
                keys=self.keys,
                endpoints=self.endpoints,
                settings=self.settings.actors,
                bus_settings=self.settings.bus,
            )
        except BaseException as exc:
            assembly.close()
            lock.release()
            if isinstance(exc, CannotListen) and exc.in_use:
                raise InUse(str(exc)) from exc  # the broker closed what it had opened
            if isinstance(exc, TaskbusError) or not isinstance(exc, Exception):
                raise
            where = ", ".join(self.endpoints) or "inproc"
            raise TaskbusError(f"cannot listen on {where}: {exc}") from exc
        assert system.broker is not None
        lock.record(system.broker.endpoints)
        self._system, self._assembly, self._lock = system, assembly, lock
        try:
            actors = assembly.factories()
            await system.spawn(actors.pop("health"), name="health", stop_rank=StopRank.OBSERVER)
            await system.spawn(actors.pop("store"), name="store", stop_rank=StopRank.SERVICE)
            if not self.settings.enabled:
                log.info("scheduling disabled (enabled = false): no scheduler or executors")
                actors.clear()
            for name, factory in actors.items():
                rank = StopRank.PRODUCER if name == "scheduler" else StopRank.WORKER
                await system.spawn(factory, name=name, identity=name, stop_rank=rank)
            if "scheduler" in actors:
                await self._until_scheduler_leads()
        except BaseException:
            await self.stop()
            raise
        return self

    async def _until_scheduler_leads(self) -> None:
        """Returns once this process's scheduler leads, so that the first ask is served; after
        a first lease renewal period it stops waiting: another scheduler leads, this one
        stands by (docs/scheduling.md#high-availability)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.scheduler.lease_ttl_s / 3 + 1.0
        while loop.time() < deadline:
            if self.system.status()["scheduler"]["state"] != ActorState.STANDBY:
                return
            await asyncio.sleep(0.01)
        log.info("scheduler standing by: another scheduler holds the lease")

    async def client(self, identity: str = "app", *, timeout_s: float = 10.0) -> TaskbusClient:
        """A client over inproc as ``identity`` (trusted: inproc peers are in this process);
        stopped with the system."""
        return TaskbusClient(await self.system.client(identity), timeout_s=timeout_s)

    async def stop(self) -> ShutdownReport:
        system, assembly, lock = self._system, self._assembly, self._lock
        if system is None:
            return ShutdownReport({})
        self._system = self._assembly = self._lock = None
        try:
            return await system.stop()
        finally:
            if assembly is not None:
                assembly.close()
            if lock is not None:
                lock.release()

    async def __aenter__(self) -> Taskbus:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()
