"""ActorSystem: spawns, supervises, reports on and stops actors, in the host's event loop.

The same actor classes run three ways: all in one process over inproc (``embedded``), or one
actor per process over ipc/tcp with CurveZMQ (``connected``, as ``taskbus actor`` does), on one
host or several.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from actors.actor import Actor
from actors.cell import ActorCell, ClientFactory
from actors.supervision import RestartIntensity, stop_stages
from bus import Broker, BusClient, BusError, KeysDirectory
from config import topics
from config.actors import ActorSettings
from config.bus import BusSettings

log = logging.getLogger("taskbus.actors")

STAGE_FLOOR_S = 1.0  # what a stop stage gets to close even once the deadline has passed


class ActorState(StrEnum):
    STARTING = "starting"
    STANDBY = "standby"  # connected, waiting in ``until_ready`` (a standby scheduler)
    RUNNING = "running"
    RESTARTING = "restarting"
    FAILED = "failed"  # escalated: restart intensity exceeded, the actor stays down
    STOPPED = "stopped"


@dataclass(eq=False)
class Supervised:
    name: str
    identity: str
    factory: Callable[[], Actor]
    intensity: RestartIntensity
    stop_rank: int = 0
    state: ActorState = ActorState.STARTING
    restarts: int = 0
    reason: str = ""
    cell: ActorCell | None = None
    task: asyncio.Task[None] | None = None
    first_start: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass(frozen=True, slots=True)
class ShutdownReport:
    """What graceful shutdown had to cancel, per actor (empty: everything finished in time)."""

    cancelled: dict[str, list[str]]

    @property
    def clean(self) -> bool:
        return not any(self.cancelled.values())


class ActorSystem:
    def __init__(
        self,
        connect: ClientFactory,
        *,
        settings: ActorSettings | None = None,
        name: str = "system",
        broker: Broker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or ActorSettings()
        self.name = name
        self.broker = broker
        self._connect = connect
        self._clock = clock
        self._actors: dict[str, Supervised] = {}
        self._client: BusClient | None = None
        self._handed_out: list[BusClient] = []
        self._reporter: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------ construction

    @classmethod
    async def embedded(
        cls,
        *,
        settings: ActorSettings | None = None,
        bus_settings: BusSettings | None = None,
        keys: KeysDirectory | None = None,
        endpoints: Sequence[str] = (),
        name: str = "system",
    ) -> ActorSystem:
        """Start a broker in this event loop and run actors over inproc.

        With ``endpoints`` (and ``keys``) the broker also listens on tcp/ipc with CurveZMQ, so
        actors in other processes or on other hosts can join.
        """
        broker = Broker(
            settings=bus_settings,
            keys=keys,
            endpoints=endpoints,
            inproc_name=f"taskbus-{name}-{os.getpid()}-{id(object())}",
        )
        await broker.start()

        async def connect(identity: str) -> BusClient:
            client = BusClient(
                broker.inproc_endpoint,
                identity=identity,
                context=broker.context,
                settings=bus_settings,
            )
            await client.start()
            return client

        system = cls(connect, settings=settings, name=name, broker=broker)
        await system._start()
        return system

    @classmethod
    async def connected(
        cls,
        endpoint: str,
        keys: KeysDirectory,
        *,
        settings: ActorSettings | None = None,
        bus_settings: BusSettings | None = None,
        name: str = "system",
    ) -> ActorSystem:
        """Run actors in this process against a broker elsewhere (ipc or tcp, CurveZMQ).

        Each actor connects as its own identity, whose keypair must be in ``keys``.
        """
        server_key = keys.broker_public_key()

        async def connect(identity: str) -> BusClient:
            client = BusClient(
                endpoint,
                identity=identity,
                keypair=keys.identity_keypair(identity),
                server_key=server_key,
                settings=bus_settings,
            )
            await client.start()
            return client

        system = cls(connect, settings=settings, name=name)
        await system._start()
        return system

    async def client(self, identity: str) -> BusClient:
        """A started bus client for the host application, connected the way the actors are.

        The system stops it on :meth:`stop` if the caller has not.
        """
        client = await self._connect(identity)
        self._handed_out.append(client)
        return client

    async def _start(self) -> None:
        self._client = await self._connect(self.name)
        self._reporter = asyncio.create_task(self._report_liveness(), name=f"{self.name}-liveness")

    # ------------------------------------------------------------ actors

    async def spawn(
        self,
        factory: Callable[[], Actor],
        *,
        name: str | None = None,
        identity: str | None = None,
        stop_rank: int | None = None,
    ) -> Supervised:
        """Start an actor under supervision; returns once its first start succeeded or failed,
        or once it waits in ``until_ready`` (state ``standby``).

        ``factory`` makes a fresh instance for every (re)start, so state never survives a crash.
        ``stop_rank`` places it in :meth:`stop`'s order (a :class:`StopRank`: the highest stops
        first); without one it is the actor's spawn index, so unranked actors stop in reverse
        spawn order.
        """
        if self._stopping:
            raise BusError("actor system is stopping")
        probe = factory()
        actor_name = name or probe.name or type(probe).__name__.lower()
        if actor_name in self._actors:
            raise BusError(f"an actor named {actor_name!r} is already running")
        supervised = Supervised(
            actor_name,
            identity or actor_name,
            factory,
            RestartIntensity.from_settings(self.settings),
            len(self._actors) if stop_rank is None else stop_rank,
        )
        self._actors[actor_name] = supervised
        supervised.task = asyncio.create_task(
            self._supervise(supervised, probe), name=f"supervise-{actor_name}"
        )
        await asyncio.shield(supervised.first_start)
        return supervised

    async def _supervise(self, supervised: Supervised, actor: Actor | None) -> None:
        while not self._stopping:
            instance = actor if actor is not None else supervised.factory()
            actor = None
            cell = ActorCell(
                instance, supervised.identity, self._connect, self.settings, self._clock
            )
            supervised.cell = cell
            try:
                await cell.start()
                if cell.waits_until_ready:
                    self._set_state(supervised, ActorState.STANDBY, "waiting until ready")
                    _resolve(supervised.first_start)
                await cell.open()
                self._set_state(supervised, ActorState.RUNNING, "")
                _resolve(supervised.first_start)
                failure = await cell.died
            except asyncio.CancelledError:
                await cell.close()  # stopped mid-start: a half-started cell must not stay connected
                raise
            except Exception as exc:  # on_start or connecting failed
                failure = exc
            if self._stopping:
                return
            reason = f"{type(failure).__name__}: {failure}"
            log.error("actor %s died: %s", supervised.name, reason)
            await cell.close()
            delay = supervised.intensity.after_failure(self._clock())
            if delay is None:
                self._set_state(
                    supervised,
                    ActorState.FAILED,
                    f"gave up after {supervised.intensity.recent_failures} failures within "
                    f"{self.settings.restart_window_s}s; last: {reason}",
                )
                _resolve(supervised.first_start)
                return
            supervised.restarts += 1
            self._set_state(
                supervised,
                ActorState.RESTARTING,
                f"restart {supervised.restarts} in {delay:.2f}s after {reason}",
            )
            _resolve(supervised.first_start)
            await asyncio.sleep(delay)

    def _set_state(self, supervised: Supervised, state: ActorState, reason: str) -> None:
        supervised.state = state
        supervised.reason = reason
        if state in (ActorState.FAILED, ActorState.RESTARTING):
            log.warning("actor %s %s: %s", supervised.name, state, reason)
        self._publish_liveness(supervised)

    # ------------------------------------------------------------ liveness

    def instance(self, name: str) -> Actor | None:
        """The running instance of the actor ``name``, for the host's introspection (its
        counters, say); None while it is not running. A restart makes a new instance."""
        supervised = self._actors.get(name)
        if supervised is None or supervised.cell is None:
            return None
        return supervised.cell.actor

    def status(self) -> dict[str, dict[str, Any]]:
        return {name: self._liveness(s) for name, s in self._actors.items()}

    def _liveness(self, supervised: Supervised) -> dict[str, Any]:
        report: dict[str, Any] = {
            "actor": supervised.name,
            "identity": supervised.identity,
            "system": self.name,
            "state": str(supervised.state),
            "reason": supervised.reason,
            "restarts": supervised.restarts,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "interval_s": self.settings.liveness_interval_s,
        }
        cell = supervised.cell
        if cell is not None and supervised.state == ActorState.RUNNING:
            report.update(cell.liveness())
        return report

    def _publish_liveness(self, supervised: Supervised) -> None:
        client = self._client
        if client is not None and not self._stopping:
            task = asyncio.ensure_future(
                client.publish(topics.LIVENESS, self._liveness(supervised))
            )
            task.add_done_callback(_ignore_result)

    async def _report_liveness(self) -> None:
        while True:
            for supervised in list(self._actors.values()):
                self._publish_liveness(supervised)
            await asyncio.sleep(self.settings.liveness_interval_s)

    # ------------------------------------------------------------ shutdown

    async def stop(self, deadline_s: float | None = None) -> ShutdownReport:
        """Stop the actors in stages, highest ``stop_rank`` first (:class:`StopRank`: the
        scheduler, then the executors, then the store, then health), each stage as
        :meth:`ActorCell.stop` does: intake stops, in-flight handlers get until the deadline
        (``deadline_s`` from now, for all stages together), the rest is cancelled. A stage
        reached after the deadline still gets STAGE_FLOOR_S (at most ``deadline_s``) to close,
        so the store closes its file. Actors not running (starting, standing by, restarting)
        are cancelled first."""
        deadline = self.settings.shutdown_deadline_s if deadline_s is None else deadline_s
        deadline_at = self._clock() + deadline
        self._stopping = True
        for supervised in self._actors.values():
            if supervised.task is not None and supervised.state != ActorState.RUNNING:
                supervised.task.cancel()
        cancelled: dict[str, list[str]] = {}
        ranks = {name: s.stop_rank for name, s in self._actors.items()}
        for stage in stop_stages(ranks):
            running = [
                s
                for s in (self._actors[name] for name in stage)
                if s.state == ActorState.RUNNING and s.cell is not None
            ]
            left = max(deadline_at - self._clock(), min(STAGE_FLOOR_S, deadline))
            results = await asyncio.gather(
                *(s.cell.stop(left) for s in running if s.cell), return_exceptions=True
            )
            for supervised, result in zip(running, results, strict=True):
                cancelled[supervised.name] = result if isinstance(result, list) else [repr(result)]
                supervised.state = ActorState.STOPPED
                if supervised.task is not None:
                    supervised.task.cancel()
        tasks = [s.task for s in self._actors.values() if s.task is not None]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._reporter is not None:
            self._reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reporter
        for client in [*self._handed_out, self._client]:
            if client is not None:
                await client.stop()  # idempotent; an open inproc client would block broker.stop
        if self.broker is not None:
            await self.broker.stop()
        report = ShutdownReport({k: v for k, v in cancelled.items() if v})
        if not report.clean:
            log.warning("shutdown cancelled in-flight work: %s", report.cancelled)
        return report


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _ignore_result(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: a liveness event that could not be sent is not an error
