"""Actors: the runtime that wires scheduling logic to the bus, and the ``taskbus`` command."""

from actors.actor import Actor, RequestRefused, Route, on_event, on_request, on_work
from actors.health import HEALTH_TOPIC, HealthActor, assess
from actors.system import LIVENESS_TOPIC, ActorState, ActorSystem, ShutdownReport

__all__ = [
    "HEALTH_TOPIC",
    "LIVENESS_TOPIC",
    "Actor",
    "ActorState",
    "ActorSystem",
    "HealthActor",
    "RequestRefused",
    "Route",
    "ShutdownReport",
    "assess",
    "on_event",
    "on_request",
    "on_work",
]
