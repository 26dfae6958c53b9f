"""Actors: the runtime (actor, cell, system, supervision, health) and the service actors that wire
scheduling logic, tasks and the store to the bus (``storing``, ``scheduling``, ``executing``)."""

from actors.actor import Actor, Route, on_event, on_request, on_work
from actors.health import HealthActor, assess
from actors.system import ActorState, ActorSystem, ShutdownReport

__all__ = [
    "Actor",
    "ActorState",
    "ActorSystem",
    "HealthActor",
    "Route",
    "ShutdownReport",
    "assess",
    "on_event",
    "on_request",
    "on_work",
]
