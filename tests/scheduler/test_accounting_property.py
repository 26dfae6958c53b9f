"""A property of the scheduler, checked on random histories: whatever sequence of creates, clean
stops, starts, kills and clock advances happened, once a scheduler leads again every instant that
came due is run (one execution, attempt 1) or recorded as missed with its reason, never both and
never twice.

The histories are drawn from fixed seeds, so a failure names the seed and the steps that led to
it and can be replayed. The oracle is written here, not taken from ``scheduler``: an
``every Ns`` task is due at the whole multiples of N seconds since the epoch after its creation,
an ``at:`` task at its instant.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.bus.waits import eventually
from tests.scheduler.rig import Rig, kill, stop_cleanly
from tests.scheduler.test_accounting import create, missed

SEEDS = range(6)
STEPS = 14
REASONS = ("skipped: missed while down", "coalesced into ", "beyond catch_up_limit")


@dataclass
class Task:
    task_id: str
    created: datetime
    every_s: int | None  # None: a one-shot at ``at``
    at: datetime | None = None

    def due(self, through: datetime) -> list[datetime]:
        """The instants of this task in (created, through]."""
        if self.every_s is None:
            assert self.at is not None
            return [self.at] if self.created < self.at <= through else []
        step = self.every_s
        first = math.floor(self.created.timestamp() / step) * step + step
        last = math.floor(through.timestamp() / step) * step
        return [datetime.fromtimestamp(s, UTC) for s in range(first, last + 1, step)]

    def span(self, entry: dict[str, Any]) -> list[datetime]:
        """The instants a missed entry stands for (a range counts several)."""
        first = datetime.fromisoformat(entry["first_at"])
        count = int(entry["count"])
        if count == 1:
            return [first]
        assert self.every_s is not None, entry
        return [first + timedelta(seconds=k * self.every_s) for k in range(count)]


@dataclass
class History:
    """One random history being played, and what it did (quoted when the property fails)."""

    rig: Rig
    rng: random.Random
    tasks: list[Task] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    leader: str | None = None
    started: int = 0

    async def start(self) -> None:
        self.started += 1
        self.leader = f"scheduler-{self.started}"
        await self.rig.leads(self.leader)

    async def step(self) -> None:
        choice = self.rng.choice(["create", "create", "advance", "advance", "stop", "kill"])
        if self.leader is None:
            choice = "start" if choice in ("stop", "kill", "create") else choice
        if choice == "start":
            await self.start()
            self.steps.append(f"start {self.leader}")
        elif choice == "create":
            await self.create()
        elif choice == "advance":
            seconds = self.rng.choice([1, 3, 7, 12, 25, 40])
            await self.rig.advance(seconds)
            self.steps.append(f"advance {seconds}s")
        else:
            assert self.leader is not None
            await (stop_cleanly if choice == "stop" else kill)(self.rig.system, self.leader)
            self.steps.append(f"{choice} {self.leader}")
            self.leader = None

    async def create(self) -> None:
        task_id = f"user.t{len(self.tasks)}"
        now = self.rig.clock.wall()
        policy = {
            "mode": self.rng.choice(["skip", "run_once", "catch_up"]),
            "grace_s": self.rng.choice([1, 5, 30]),
            "catch_up_limit": self.rng.choice([1, 3, 100]),
        }
        if self.rng.random() < 0.5:
            at = now + timedelta(seconds=self.rng.randint(1, 30))
            await create(self.rig.caller, task_id, f"at:{at.isoformat()}", misfire_policy=policy)
            self.tasks.append(Task(task_id, now, None, at))
            self.steps.append(f"create {task_id} at +{(at - now).total_seconds():.0f}s {policy}")
        else:
            every = self.rng.choice([5, 10, 30])
            await create(self.rig.caller, task_id, f"every {every}s", misfire_policy=policy)
            self.tasks.append(Task(task_id, now, every))
            self.steps.append(f"create {task_id} every {every}s {policy}")

    async def accounting(self, through: datetime) -> dict[str, dict[str, Any]]:
        """Per task: its due instants through ``through``, its first attempts and its missed
        instants, as the store holds them."""
        found: dict[str, dict[str, Any]] = {}
        for task in self.tasks:
            history = await self.rig.caller.ask(
                "store.execution.history", task_id=task.task_id, limit=1000
            )
            runs = [
                datetime.fromisoformat(r["scheduled_at"])
                for r in history["executions"]
                if r["retry_count"] == 0
            ]
            entries = await missed(self.rig.caller, task.task_id)
            found[task.task_id] = {
                "due": task.due(through),
                "runs": runs,
                "missed": [t for entry in entries for t in task.span(entry)],
                "reasons": [entry["reason"] for entry in entries],
            }
        return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", SEEDS)
async def test_every_due_instant_is_run_or_recorded_as_missed_whatever_happened(
    rig: Rig, seed: int
) -> None:
    history = History(rig, random.Random(seed))
    await history.start()
    for _ in range(STEPS):
        await history.step()
    if history.leader is None:
        await history.start()
    through = rig.clock.wall()  # every instant up to here is due, and a scheduler leads

    async def accounted() -> bool:
        state = await history.accounting(through)
        return all(set(s["due"]) <= set(s["runs"]) | set(s["missed"]) for s in state.values())

    story = f"seed {seed}: " + "; ".join(history.steps)
    try:
        await eventually(accounted, "every due instant run or recorded", 20)
    except AssertionError:
        raise AssertionError(f"{story}\n{await history.accounting(through)}") from None
    for task_id, state in (await history.accounting(through)).items():
        runs, not_run = state["runs"], state["missed"]
        assert len(runs) == len(set(runs)), (story, task_id, runs)  # one execution per instant
        assert len(not_run) == len(set(not_run)), (story, task_id, not_run)
        assert not set(runs) & set(not_run), (story, task_id, state)
        assert all(r.startswith(REASONS) for r in state["reasons"]), (story, task_id, state)
        assert set(runs) | set(not_run) <= set(state["due"]) | {t for t in runs if t > through}, (
            story,
            task_id,
            state,
        )  # nothing that was never due
