"""How taskbus is put together from its settings: the task registry, the built-in tasks as the
scheduler stores them, and a factory for every actor ``taskbus up`` runs or ``taskbus actor
<name>`` runs alone (``health``, ``store``, ``scheduler``, ``executor-<category>``).
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from actors.actor import Actor
from actors.executing import ExecutorActor
from actors.health import HealthActor
from actors.scheduling import SchedulerActor
from actors.scheduling.owners import SYSTEM_OWNER, Owners
from actors.storing.actor import StoreActor
from bus.acl import Roles
from config.settings import Settings, thawed
from scheduler.overlap import Limits
from store.libsql_store import LibsqlStore
from store.records import TaskSpec
from tasks import TaskRegistry
from tasks.effective import effective_schedule

ActorFactory = Callable[[], Actor]


def builtin_specs(settings: Settings, registry: TaskRegistry) -> list[TaskSpec]:
    """Every code-defined task with its schedule, zone and options from ``[tasks."<id>"]``."""
    specs = []
    for cls in registry.code_defined():
        override = settings.task(cls.task_id)
        run: dict[str, Any] = {"allow_overlap": cls.allow_overlap}
        if cls.timeout_s is not None:
            run["timeout_s"] = float(cls.timeout_s)
        specs.append(
            TaskSpec(
                task_id=cls.task_id,
                task_class=cls.key(),
                schedule=effective_schedule(cls, override),
                timezone=(override.timezone if override and override.timezone else None)
                or settings.scheduler.default_timezone,
                config=thawed(override.options) if override else {},
                enabled=True if override is None or override.enabled is None else override.enabled,
                run_policy=run,
                owner=SYSTEM_OWNER,
            )
        )
    return specs


def run_limits(settings: Settings) -> Limits:
    """The runs at once the scheduler allows across every executor: per category
    (``categories.<c>.concurrency``) and in total (``scheduler.max_concurrent_tasks``)."""
    return Limits(
        categories={c.name: c.concurrency for c in settings.categories},
        total=settings.scheduler.max_concurrent_tasks,
    )


@dataclass
class Assembly:
    """The actors of one process, sharing its global task slots and its process pool."""

    settings: Settings
    registry: TaskRegistry = field(default_factory=TaskRegistry.with_builtins)
    _slots: asyncio.Semaphore | None = None
    _pool: ProcessPoolExecutor | None = None

    def __post_init__(self) -> None:
        self.registry.discover(self.settings.scheduler.task_modules)

    def factories(self) -> dict[str, ActorFactory]:
        settings = self.settings
        roles = Roles(settings.bus.roles)
        found: dict[str, ActorFactory] = {
            "health": lambda: HealthActor(
                lease_ttl_s=settings.scheduler.lease_ttl_s,
                is_scheduler=roles.member_of("scheduler"),
            ),
            "store": lambda: StoreActor(LibsqlStore.from_settings(settings)),
            "scheduler": lambda: SchedulerActor(
                settings.scheduler,
                builtin=builtin_specs(settings, self.registry),
                owners=Owners(roles),
                agents=settings.agents,
                limits=run_limits(settings),
            ),
        }
        for category in settings.categories:
            if category.enabled:
                found[f"executor-{category.name}"] = self._executor(category.name)
        return found

    def _executor(self, name: str) -> ActorFactory:
        def make() -> ExecutorActor:
            if self._slots is None:  # one bound on the sum of the categories in this process
                self._slots = asyncio.Semaphore(self.settings.scheduler.max_concurrent_tasks)
            return ExecutorActor(
                self.settings.category(name),
                self.registry,
                scheduler=self.settings.scheduler,
                resources=self.settings.resources,
                global_slots=self._slots,
                data_dir=self.settings.paths.data_dir,
                process_pool=self.pool,
                poison_after=self.settings.scheduler.poison_after,
            )

        return make

    @property
    def pool(self) -> ProcessPoolExecutor:
        """Started on first use by a task (``ctx.run_in_process``), with spawn: no fork of a
        process that has threads."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
