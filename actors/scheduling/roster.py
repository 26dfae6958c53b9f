"""The enabled tasks the leading scheduler fires, compiled, with the fire loop kept in step: a task
put here is put in the timing engine (which wakes the loop), a task taken out leaves it.

A stored schedule whose meaning changed under newer cron rules is logged once per task and
version (``note_meaning``).
"""

from __future__ import annotations

import logging
from datetime import datetime

from actors.fireloop import FireLoop
from actors.scheduling import definitions
from actors.scheduling.definitions import CompiledTask
from scheduler import Clock, Schedule, TimingEngine


class Roster:
    def __init__(self, loop: FireLoop, *, clock: Clock, log: logging.Logger) -> None:
        self._loop = loop
        self._clock = clock
        self._log = log
        self._tasks: dict[str, CompiledTask] = {}
        self._noted: set[tuple[str, int]] = set()  # (task, version) whose note was logged

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    @property
    def engine(self) -> TimingEngine:
        return self._loop.engine

    def get(self, task_id: str) -> CompiledTask | None:
        return self._tasks.get(task_id)

    def put(self, task: CompiledTask) -> datetime | None:
        """Fire ``task`` from now on, owing what follows its ``accounted_through``; returns its
        next fire."""
        self._tasks[task.task_id] = task
        return self._loop.put(
            task.task_id,
            task.schedule,
            task.policies.misfire,
            last_fired=definitions.accounted_through(task.record),
        )

    def remove(self, task_id: str) -> None:
        """Fire it no more (its last fire is kept, should it come back)."""
        self._tasks.pop(task_id, None)
        self._loop.remove(task_id)

    def reset(self, task_id: str) -> None:
        """Forget its last fire too (``scheduler.task.reset``), before it is put again."""
        self.engine.forget(task_id)

    def next_fire(self, task_id: str) -> datetime | None:
        return self.engine.next_fire(task_id)

    def upcoming(self, task_id: str, schedule: Schedule, last_fired: datetime) -> datetime | None:
        """The next fire ``put`` would give the task, were it accounted through ``last_fired``."""
        return self.engine.upcoming(task_id, schedule, last_fired=last_fired)

    def note_meaning(self, task: CompiledTask) -> None:
        """Log, once per task and version, that its stored schedule changed meaning."""
        key = (task.task_id, task.record.version)
        if key in self._noted:
            return
        note = definitions.meaning_note(task, self._clock.wall())
        if note is not None:
            self._noted.add(key)
            self._log.warning("%s: %s", task.task_id, note)
