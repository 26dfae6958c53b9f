"""Health: every actor's liveness folded into healthy / degraded / critical, with reasons."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from actors.actor import Actor, on_event, on_request
from actors.system import ActorState
from bus import Envelope
from bus.acl import Roles
from bus.envelope import Payload
from config import topics
from config.bus import default_roles

HEALTHY, DEGRADED, CRITICAL = "healthy", "degraded", "critical"
_RANK = {HEALTHY: 0, DEGRADED: 1, CRITICAL: 2}
STALE_INTERVALS = 3  # liveness reports missed before an actor counts as gone


LEADERSHIP = "scheduling"  # the entry of the report that says whether a scheduler leads


def someone_leads(
    reports: Mapping[str, tuple[float, Mapping[str, Any]]],
    now: float,
    is_scheduler: Callable[[str], bool],
) -> bool | None:
    """Pure: whether a scheduler leads (one reports ``running`` and is not silent); None when
    no scheduler has reported at all (scheduling runs elsewhere, or not at all)."""
    seen = False
    for name, (received, report) in reports.items():
        if not is_scheduler(name):
            continue
        seen = True
        interval = float(report.get("interval_s", 5.0))
        fresh = now - received <= STALE_INTERVALS * interval
        if fresh and report.get("state") == ActorState.RUNNING:
            return True
    return False if seen else None


def assess(
    reports: Mapping[str, tuple[float, Mapping[str, Any]]],
    now: float,
    stuck_after_s: float,
    *,
    leaderless_s: float | None = None,
    lease_ttl_s: float = 10.0,
) -> dict[str, Any]:
    """Pure: ``reports`` maps actor identity to (when received, its last liveness payload);
    ``leaderless_s``, how long no scheduler has led (None: one leads, or none is known). Past
    the lease TTL that is critical: nothing fires. An actor that reported ``metrics`` (its
    numbers for monitoring) has them passed on, unless it has fallen silent."""
    actors: dict[str, dict[str, Any]] = {}
    for name, (received, report) in sorted(reports.items()):
        status, reasons = HEALTHY, []
        state = report.get("state")
        interval = float(report.get("interval_s", 5.0))
        silent = now - received
        if state == ActorState.FAILED:
            status, reasons = CRITICAL, [f"failed: {report.get('reason', '')}"]
        elif state == ActorState.STOPPED:
            status, reasons = DEGRADED, ["stopped"]
        elif silent > STALE_INTERVALS * interval:
            status, reasons = CRITICAL, [f"no liveness for {silent:.1f}s"]
        elif report.get("critical"):
            status, reasons = CRITICAL, [str(reason) for reason in report["critical"]]
        elif state == ActorState.RESTARTING:
            status, reasons = DEGRADED, [str(report.get("reason", "restarting"))]
        elif float(report.get("busy_s", 0.0)) > stuck_after_s:
            status = DEGRADED
            reasons = [f"stuck: {', '.join(report.get('inflight', [])) or 'busy'}"]
        elif report.get("degraded"):
            status, reasons = DEGRADED, [str(reason) for reason in report["degraded"]]
        actors[name] = {
            "status": status,
            "reasons": reasons,
            "state": state,
            "restarts": report.get("restarts", 0),
            "host": report.get("host"),
            "pid": report.get("pid"),
        }
        metrics = report.get("metrics")
        if metrics and silent <= STALE_INTERVALS * interval:  # a silent actor's are stale
            actors[name]["metrics"] = dict(metrics)
    if leaderless_s is not None and leaderless_s > lease_ttl_s:
        actors[LEADERSHIP] = {
            "status": CRITICAL,
            "reasons": [
                f"no scheduler has led for {leaderless_s:.0f}s (lease TTL {lease_ttl_s:g}s): "
                "nothing fires"
            ],
            "state": None,
            "restarts": 0,
            "host": None,
            "pid": None,
        }
    worst = max((a["status"] for a in actors.values()), key=_RANK.__getitem__, default=HEALTHY)
    return {"status": worst, "actors": actors}


class HealthActor(Actor):
    """Aggregates ``actors.liveness``; publishes ``scheduler.health`` and answers health asks."""

    name = "health"

    def __init__(
        self,
        publish_interval_s: float = 5.0,
        stuck_after_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        lease_ttl_s: float = 10.0,
        is_scheduler: Callable[[str], bool] | None = None,
    ) -> None:
        """``is_scheduler`` tells a scheduler's identity (default: the default
        ``bus.roles.scheduler``); ``lease_ttl_s`` how long leading may lapse."""
        super().__init__()
        self._interval = publish_interval_s
        self._stuck_after_s = stuck_after_s
        self._clock = clock
        self._lease_ttl_s = lease_ttl_s
        self._is_scheduler = is_scheduler or Roles(default_roles()).member_of("scheduler")
        self._reports: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self._leaderless_since: float | None = None
        self._last_status = ""

    @on_event(topics.LIVENESS)
    async def liveness(self, event: Envelope) -> None:
        name = event.payload.get("identity")  # unique on the bus, unlike class names
        if isinstance(name, str):
            self._reports[name] = (self._clock(), event.payload)
            report = self.report()
            if report["status"] != self._last_status:
                await self._announce(report)

    @on_request(topics.HEALTH)
    async def health(self, request: Envelope) -> Payload:
        return self.report()

    def report(self) -> dict[str, Any]:
        now = self._clock()
        leads = someone_leads(self._reports, now, self._is_scheduler)
        if leads is False:
            if self._leaderless_since is None:
                self._leaderless_since = now
        else:
            self._leaderless_since = None
        since = self._leaderless_since
        return assess(
            self._reports,
            now,
            self._stuck_after_s,
            leaderless_s=None if since is None else now - since,
            lease_ttl_s=self._lease_ttl_s,
        )

    async def run(self) -> None:
        while True:
            await self._announce(self.report())
            await asyncio.sleep(self._interval)

    async def _announce(self, report: dict[str, Any]) -> None:
        self._last_status = report["status"]
        await self.publish(topics.HEALTH, report)
