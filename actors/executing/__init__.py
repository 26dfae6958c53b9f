"""Executors: one actor per task category runs its dispatched tasks within limits."""

from actors.executing.actor import ExecutorActor

__all__ = ["ExecutorActor"]
