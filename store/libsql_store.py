"""``LibsqlStore``: the Store in one encrypted libSQL file, written by one thread with group commit.

Each request's arguments are checked here, then it runs as one job of the database thread
(``store.worker``), whose SQL is in the modules of the tables: ``scheduled_tasks``,
``task_executions`` (its pages in ``history``, its statistics in ``stats``), ``dead_letters``,
``missed_runs``, ``run_steps``, ``runs`` (durable runs and their inboxes), ``leases``, and
``retention``. Keys: ``store.keys``; rotation
and its recovery at start: ``store.rekey``. What the store knows to be wrong with its file
(damage met, writes refused): ``store.condition``; when the engine fails: ``store.worker``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from config.settings import Settings
from config.store import StoreSettings
from store import (
    dead_letters,
    history,
    leases,
    missed_runs,
    retention,
    run_steps,
    runs,
    salvage,
    scheduled_tasks,
    stats,
    task_executions,
    values,
)
from store._files import sync_directory
from store._sql import Connection, Row
from store.condition import StoreCondition
from store.database import Database
from store.errors import Damaged, InvalidValue, StoreError
from store.keys import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    MasterKey,
    replace_key_file,
    resolve_master_key,
)
from store.leases import Fence, LeaseGrant
from store.operations import Outcome
from store.records import (
    FINAL_RUN_STATES,
    MAX_EXECUTION_BATCH,
    MAX_MISSED_BATCH,
    RUN_ACTIONS,
    RUN_STATES,
    DeadLetterRecord,
    ExecutionOutcome,
    ExecutionRecord,
    InboxSignal,
    Lease,
    MissedRunRecord,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    NewSignal,
    Page,
    Recorded,
    RetentionReport,
    RunMark,
    RunRecord,
    RunSuspension,
    StatsReport,
    StepOutcome,
    StepRecord,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    check_run_key,
    query_answers,
)
from store.records import run_key as run_key_of
from store.rekey import open_finishing_rotation, rekey_by_copy, remove_work_files
from store.schema import MIGRATIONS, Migration
from store.store import Store
from store.worker import StoreWorker

log = logging.getLogger("taskbus.store")
T = TypeVar("T")

MAX_LEASE_S = 86_400.0
_VACUUM_PAGES = 2_000
_SCAN_ROWS = 1_000  # rows the integrity check reads per job, so that other jobs interleave
# The tables the integrity check reads row by row, each with its columns and how a row becomes
# a record (None: the columns alone, decoded).
_CHECKED: tuple[tuple[str, str, Callable[[Row], object] | None], ...] = (
    ("scheduled_tasks", scheduled_tasks.TASK_COLUMNS, scheduled_tasks.task_from_row),
    ("task_executions", task_executions.EXECUTION_COLUMNS, task_executions.execution_from_row),
    ("dead_letters", dead_letters.DEAD_LETTER_COLUMNS, dead_letters.dead_letter_from_row),
    ("missed_runs", missed_runs.MISSED_RUN_COLUMNS, missed_runs.missed_run_from_row),
    ("run_steps", run_steps.STEP_COLUMNS, run_steps.step_from_row),
    ("runs", runs.RUN_COLUMNS, runs.run_from_row),
    ("run_inbox", runs.SIGNAL_COLUMNS, runs.signal_from_row),
    ("scheduler_lease", "name, holder, expires_at, token", None),
    ("schema_version", "version, description, applied_at", None),
)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RekeyReport:
    """Where the pre-rekey backup is, and the file holding the master key that opens it."""

    backup: Path
    backup_key_file: Path | None
    key_source: str


class LibsqlStore(Store):
    """The store in ``path``. The master key is ``master_key`` if given, else
    ``$TASKBUS_MASTER_KEY`` from ``environ``, else ``key_file`` (created with a new database).

    ``clock`` only stamps migrations and backup names; every other time is an argument.
    """

    def __init__(
        self,
        path: Path,
        *,
        key_file: Path | None = None,
        master_key: MasterKey | None = None,
        environ: Mapping[str, str] | None = None,
        settings: StoreSettings | None = None,
        clock: Callable[[], datetime] = utc_now,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> None:
        self.path = path
        self.key_file = key_file or path.with_name(MASTER_KEY_FILE)
        self.settings = settings or StoreSettings()
        self._supplied = master_key
        self._environ = os.environ if environ is None else environ
        self._clock = clock
        self._migrations = migrations
        self._worker: StoreWorker | None = None
        self._master: MasterKey | None = None
        self.applied: list[Migration] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        master_key: MasterKey | None = None,
        store_settings: StoreSettings | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> LibsqlStore:
        """The store at ``paths.database_path``, its key file ``<data_dir>/master.key``."""
        return cls(
            settings.paths.database_path,
            key_file=settings.paths.data_dir / MASTER_KEY_FILE,
            master_key=master_key,
            environ=environ,
            settings=settings.store if store_settings is None else store_settings,
        )

    @property
    def pending_key_file(self) -> Path:
        return self.key_file.with_name(self.key_file.name + ".next")

    @property
    def key_source(self) -> str:
        return self._master.source if self._master else "not resolved yet"

    @property
    def worker(self) -> StoreWorker:
        """The database thread, for maintenance calls (``worker.call(Database.checkpoint)``)."""
        return self._running

    @property
    def _file_keyed(self) -> bool:
        return self._supplied is None and not self._environ.get(MASTER_KEY_ENV)

    @property
    def _running(self) -> StoreWorker:
        if self._worker is None:
            raise StoreError(f"store {self.path} is not running")
        return self._worker

    # ------------------------------------------------------------ condition

    @property
    def condition(self) -> StoreCondition | None:
        """What is known to be wrong with the file while the store runs (None: not running)."""
        return None if self._worker is None else self._worker.condition

    def critical(self) -> list[str]:
        """From ``condition`` (the rules: ``store.condition``)."""
        condition = self.condition
        return [] if condition is None else condition.critical()

    def degraded(self) -> list[str]:
        condition = self.condition
        return [] if condition is None else condition.degraded()

    async def serving(self) -> StoreError:
        """Returns why the database thread died."""
        return await self._running.dead()

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open the file (again, if the database thread died: see :meth:`serving`)."""
        if self._worker is not None:
            if self._worker.death is None:
                return
            await self.close()
        remove_work_files(self.path)
        create = not self.path.exists() or self.path.stat().st_size == 0
        master = resolve_master_key(
            supplied=self._supplied, environ=self._environ, key_file=self.key_file, create=create
        )
        database = Database(
            self.path,
            master.database_key(),
            synchronous=self.settings.synchronous,
            migrations=self._migrations,
        )
        worker = StoreWorker(database, max_batch=self.settings.max_batch)
        await worker.start()
        try:
            now_us = values.to_us(self._clock())
            pending = self.pending_key_file if self._file_keyed else None
            self._master, self.applied = await worker.call(
                partial(open_finishing_rotation, master=master, pending=pending, now_us=now_us)
            )
        except BaseException:
            await worker.close()
            raise
        self._worker = worker
        for migration in self.applied:
            log.info("store %s: migrated to schema version %d", self.path, migration.version)

    async def close(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.close()

    async def integrity_check(self) -> list[str]:
        """``["ok"]``, or every problem found: what SQLite's ``integrity_check`` reports (or
        the error that stopped it), then each row libSQL cannot hand over (a text that is not
        UTF-8, which SQLite's check does not look at: libsql panics on it) or whose stored maps
        do not decode, named by table, rowid and key. Damage is an answer, never an exception:
        a table that cannot be read at all is one problem, and the check goes on. It reads
        every row, ``_SCAN_ROWS`` at a time, so other requests interleave; its findings replace
        what ``condition`` knew of damage.
        """
        worker = self._running
        problems = [p for p in await worker.call(Database.integrity_check) if p != "ok"]
        for table, columns, convert in _CHECKED:
            after: int | None = 0
            while after is not None:
                scan = partial(
                    salvage.scan,
                    table=table,
                    columns=columns,
                    convert=convert or tuple,
                    after=after,
                    chunk=_SCAN_ROWS,
                )
                try:
                    found, after = await worker.read(scan, what=f"table {table}")
                except Damaged as exc:
                    found, after = [f"table {table}: {exc.engine_error}"], None
                problems.extend(found)
        worker.condition.checked(problems)
        return problems or ["ok"]

    async def vacuum(self) -> tuple[int, int]:
        """VACUUM and ANALYZE the database; the page counts before and after."""
        return await self._running.call(Database.vacuum)

    # ------------------------------------------------------------ key rotation

    async def rekey(
        self, new_master: MasterKey | None = None, *, backup: Path | None = None
    ) -> RekeyReport:
        """Re-encrypt the database under a new master key, after a backup (store.rekey).

        With the key in ``master.key``, a new random key is made if none is given, and the file
        is replaced when the database is done; the old key is kept beside the backup
        (``<backup>.key``), which it opens. With a key from the host or the environment, pass
        the new key, and hand it to taskbus the same way from now on.
        """
        worker = self._running
        if not self._file_keyed and new_master is None:
            raise StoreError(
                f"the master key comes from {self.key_source}: pass the new key to rekey() and "
                f"give it to taskbus the same way afterwards"
            )
        old = self._master
        assert old is not None
        new = new_master or MasterKey.generate(f"file {self.key_file}")
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        backup = backup or self.path.with_name(f"{self.path.name}.{stamp}.bak")
        backup_key = backup.with_name(backup.name + ".key") if self._file_keyed else None
        if backup_key is not None:
            replace_key_file(backup_key, old)
            replace_key_file(self.pending_key_file, new)
        try:
            now_us = values.to_us(self._clock())
            await worker.call(
                partial(rekey_by_copy, key=new.database_key(), backup=backup, now_us=now_us)
            )
        except BaseException:
            if backup_key is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.pending_key_file.unlink()
            raise
        if backup_key is not None:
            os.replace(self.pending_key_file, self.key_file)
            sync_directory(self.key_file.parent)
            new = MasterKey(new.secret, f"file {self.key_file}")
        self._master = new
        log.info("store %s: rekeyed; backup under the old key in %s", self.path, backup)
        return RekeyReport(backup, backup_key, new.source)

    # ------------------------------------------------------------ tasks

    async def put_task(
        self, spec: TaskSpec, *, now: datetime, expected_version: int | None = None
    ) -> Recorded[TaskRecord]:
        now = values.instant("now", now)
        if expected_version is not None:
            values.count("expected_version", expected_version)
        return await self._running.write(
            lambda c: scheduled_tasks.put_task(c, spec, now, expected_version, self.settings)
        )

    async def put_tasks(
        self,
        puts: Sequence[tuple[TaskSpec, int | None]],
        *,
        now: datetime,
        fence: Fence | None = None,
    ) -> list[Recorded[TaskRecord] | StoreError]:
        batch = tuple(puts)
        if len(batch) > MAX_EXECUTION_BATCH:
            raise InvalidValue("tasks", f"has {len(batch)} entries, at most {MAX_EXECUTION_BATCH}")
        for index, (spec, expected_version) in enumerate(batch):
            if not isinstance(spec, TaskSpec):
                raise InvalidValue(f"tasks[{index}]", f"expected a TaskSpec, got {spec!r}")
            if expected_version is not None:
                values.count(f"tasks[{index}].expected_version", expected_version)
        now = values.instant("now", now)
        return await self._running.write(
            lambda c: scheduled_tasks.put_tasks(c, batch, now, fence, self.settings)
        )

    async def get_task(self, task_id: str) -> TaskRecord:
        task_id = values.identifier("task_id", task_id)
        return await self._running.read(
            lambda c: scheduled_tasks.get_task(c, task_id), what=f"task {task_id!r}"
        )

    async def list_tasks(
        self, *, after: str | None = None, limit: int = 100, owner: str | None = None
    ) -> Page[TaskRecord]:
        return await self._running.read(
            lambda c: scheduled_tasks.list_tasks(c, after, limit, owner),
            what=_paged("the task list", after),
        )

    async def delete_task(self, task_id: str) -> bool:
        task_id = values.identifier("task_id", task_id)
        return await self._running.write(lambda c: scheduled_tasks.delete_task(c, task_id))

    async def mark_run(
        self, task_id: str, *, last_run: datetime | None, next_run: datetime | None, now: datetime
    ) -> TaskRecord:
        task_id = values.identifier("task_id", task_id)
        last = None if last_run is None else values.instant("last_run", last_run)
        following = None if next_run is None else values.instant("next_run", next_run)
        now = values.instant("now", now)
        return await self._running.write(
            lambda c: scheduled_tasks.mark_run(c, task_id, last, following, now)
        )

    async def reset_task(
        self, task_id: str, *, now: datetime, accounted_through: datetime | None = None
    ) -> TaskRecord:
        task_id = values.identifier("task_id", task_id)
        now = values.instant("now", now)
        through = (
            None
            if accounted_through is None
            else values.instant("accounted_through", accounted_through)
        )
        return await self._running.write(
            lambda c: scheduled_tasks.reset_task(c, task_id, now, through)
        )

    async def task_status(self, task_id: str) -> TaskStatus:
        task_id = values.identifier("task_id", task_id)
        return await self._running.read(
            lambda c: scheduled_tasks.task_status(c, task_id),
            what=f"the status of task {task_id!r}",
        )

    # ------------------------------------------------------------ executions

    async def record_execution(
        self, new: NewExecution, *, fence: Fence | None = None
    ) -> Recorded[ExecutionRecord]:
        return await self._running.write(task_executions.RecordExecution(new, fence, self.settings))

    async def finish_execution(
        self, execution_id: str, outcome: ExecutionOutcome, *, fence: Fence | None = None
    ) -> Recorded[ExecutionRecord]:
        execution_id = values.identifier("execution_id", execution_id)
        return await self._running.write(
            lambda c: task_executions.finish_execution(
                c, execution_id, outcome, fence, self.settings
            )
        )

    async def record_fires(
        self,
        news: Sequence[NewExecution],
        *,
        marks: Sequence[RunMark] = (),
        fence: Fence | None = None,
        now: datetime,
    ) -> list[Recorded[ExecutionRecord]]:
        batch = _entries("executions", news, NewExecution, 0, MAX_EXECUTION_BATCH)
        marked = _entries("marks", marks, RunMark, 0, MAX_EXECUTION_BATCH)
        now = values.instant("now", now)
        return await self._running.write(
            lambda c: task_executions.record_fires(
                c, batch, fence=fence, marks=marked, now=now, limits=self.settings
            )
        )

    async def finish_executions(
        self, finishes: Sequence[tuple[str, ExecutionOutcome]]
    ) -> list[Recorded[ExecutionRecord] | StoreError]:
        batch = tuple(
            (values.identifier(f"executions[{index}].execution_id", execution_id), outcome)
            for index, (execution_id, outcome) in enumerate(finishes)
        )
        if len(batch) > MAX_EXECUTION_BATCH:
            raise InvalidValue(
                "executions", f"has {len(batch)} entries, at most {MAX_EXECUTION_BATCH}"
            )
        outcomes = await self._running.write(
            lambda c: task_executions.finish_executions(c, batch, self.settings)
        )
        return [_finished(outcome) for outcome in outcomes]

    async def execution_outcomes(self, execution_ids: Sequence[str]) -> dict[str, bool | None]:
        ids = [values.identifier("execution_ids", i) for i in execution_ids]
        return await self._running.read(
            lambda c: task_executions.execution_outcomes(c, ids),
            what=f"the outcomes of {len(ids)} executions",
        )

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        execution_id = values.identifier("execution_id", execution_id)
        return await self._running.read(
            lambda c: task_executions.get_execution(c, execution_id),
            what=f"execution {execution_id!r}",
        )

    async def history(
        self, task_id: str, *, before: str | None = None, limit: int = 50
    ) -> Page[ExecutionRecord]:
        task_id = values.identifier("task_id", task_id)
        return await self._running.read(
            lambda c: history.history(c, task_id, before, limit),
            what=_paged(f"the history of task {task_id!r}", before),
        )

    async def unsettled_executions(
        self, *, since: datetime | None = None, after: str | None = None, limit: int = 100
    ) -> Page[ExecutionRecord]:
        return await self._running.read(
            lambda c: history.unsettled_executions(c, since, after, limit),
            what=_paged("the unsettled executions", after),
        )

    async def stats(
        self, *, since: datetime | None = None, task_id: str | None = None
    ) -> StatsReport:
        if task_id is not None:
            task_id = values.identifier("task_id", task_id)
        what = "the statistics" + ("" if task_id is None else f" of task {task_id!r}")
        return await self._running.read(lambda c: stats.stats(c, since, task_id), what=what)

    # ------------------------------------------------------------ dead letters

    async def add_dead_letter(self, letter: NewDeadLetter) -> Recorded[DeadLetterRecord]:
        return await self._running.write(
            lambda c: dead_letters.add_dead_letter(c, letter, self.settings)
        )

    async def dead_letters(
        self, *, task_id: str | None = None, before: str | None = None, limit: int = 50
    ) -> Page[DeadLetterRecord]:
        if task_id is not None:
            task_id = values.identifier("task_id", task_id)
        what = "the dead letters" + ("" if task_id is None else f" of task {task_id!r}")
        return await self._running.read(
            lambda c: dead_letters.dead_letters(c, task_id, before, limit),
            what=_paged(what, before),
        )

    # ------------------------------------------------------------ missed runs

    async def record_missed(
        self,
        task_id: str,
        runs: Sequence[NewMissedRun],
        *,
        now: datetime,
        fence: Fence | None = None,
        fired: bool = False,
    ) -> int:
        task_id = values.identifier("task_id", task_id)
        batch = _entries("runs", runs, NewMissedRun, 1, MAX_MISSED_BATCH)
        now = values.instant("now", now)
        return await self._running.write(
            lambda c: missed_runs.record_missed(c, task_id, batch, now, fence, fired=fired is True)
        )

    async def missed_runs(
        self, task_id: str, *, before: str | None = None, limit: int = 50
    ) -> Page[MissedRunRecord]:
        task_id = values.identifier("task_id", task_id)
        return await self._running.read(
            lambda c: missed_runs.missed_runs(c, task_id, before, limit),
            what=_paged(f"the missed runs of task {task_id!r}", before),
        )

    # ------------------------------------------------------------ run steps

    async def put_step(self, run_key: str, outcome: StepOutcome) -> Recorded[StepRecord]:
        run_key = values.identifier("run_key", run_key)
        if not isinstance(outcome, StepOutcome):
            raise InvalidValue("step", f"expected a StepOutcome, got {type(outcome).__name__}")
        encoded = (
            run_steps.encode_result(outcome.result, self.settings)
            if outcome.status == "ok"
            else None
        )
        return await self._running.write(
            lambda c: run_steps.put_step(c, run_key, outcome, encoded, self.settings)
        )

    async def run_steps(self, run_key: str) -> tuple[StepRecord, ...]:
        run_key = values.identifier("run_key", run_key)
        return await self._running.read(
            lambda c: run_steps.run_steps(c, run_key), what=f"the steps of run {run_key!r}"
        )

    # ------------------------------------------------------------ durable runs

    async def suspend_run(self, suspension: RunSuspension) -> RunRecord:
        if not isinstance(suspension, RunSuspension):
            raise InvalidValue(
                "suspension", f"expected a RunSuspension, got {type(suspension).__name__}"
            )
        answers = runs.encode_answers(suspension.answers, self.settings)
        return await self._running.write(lambda c: runs.suspend_run(c, suspension, answers))

    async def wake_run(self, run_key: str, *, now: datetime) -> RunRecord | None:
        run_key = values.identifier("run_key", run_key)
        now = values.instant("now", now)
        return await self._running.write(lambda c: runs.wake_run(c, run_key, now))

    async def put_signal(
        self, new: NewSignal, *, task_id: str, scheduled_at: datetime
    ) -> tuple[InboxSignal, RunRecord]:
        if not isinstance(new, NewSignal):
            raise InvalidValue("signal", f"expected a NewSignal, got {type(new).__name__}")
        task_id, scheduled_at = _fire(new.run_key, task_id, scheduled_at)
        encoded = runs.encode_payload(new.payload, self.settings)
        return await self._running.write(
            lambda c: runs.put_signal(c, new, encoded, task_id, scheduled_at)
        )

    async def run_signals(self, run_key: str) -> tuple[InboxSignal, ...]:
        run_key = values.identifier("run_key", run_key)
        return await self._running.read(
            lambda c: runs.run_signals(c, run_key), what=f"the signals of run {run_key!r}"
        )

    async def control_run(
        self,
        run_key: str,
        *,
        task_id: str,
        scheduled_at: datetime,
        action: str,
        reason: str | None = None,
        now: datetime,
    ) -> tuple[RunRecord, str]:
        run_key = values.identifier("run_key", run_key)
        task_id, scheduled_at = _fire(run_key, task_id, scheduled_at)
        if action not in RUN_ACTIONS:
            raise InvalidValue("action", f"expected one of {', '.join(sorted(RUN_ACTIONS))}")
        why = self._reason(reason)
        now = values.instant("now", now)
        return await self._running.write(
            lambda c: runs.control_run(
                c,
                run_key,
                task_id=task_id,
                scheduled_at=scheduled_at,
                action=action,
                reason=why,
                now=now,
            )
        )

    async def reopen_run(
        self,
        run_key: str,
        *,
        task_id: str,
        scheduled_at: datetime,
        from_step: str | None = None,
        now: datetime,
    ) -> tuple[RunRecord, tuple[str, ...]]:
        run_key = values.identifier("run_key", run_key)
        task_id, scheduled_at = _fire(run_key, task_id, scheduled_at)
        if from_step is not None:
            from_step = values.identifier("from_step", from_step)
        now = values.instant("now", now)

        def reopen(c: Connection) -> tuple[RunRecord, tuple[str, ...]]:
            latest = task_executions.latest_attempt(c, run_key)
            return runs.reopen_run(
                c,
                run_key,
                task_id=task_id,
                scheduled_at=scheduled_at,
                from_step=from_step,
                latest=latest,
                now=now,
            )

        return await self._running.write(reopen)

    async def get_run(self, run_key: str) -> RunRecord:
        run_key = values.identifier("run_key", run_key)
        return await self._running.read(lambda c: runs.get_run(c, run_key), what=f"run {run_key!r}")

    async def list_runs(
        self,
        *,
        task_id: str | None = None,
        states: Sequence[str] = (),
        after: str | None = None,
        limit: int = 50,
        owner: str | None = None,
    ) -> Page[RunRecord]:
        if task_id is not None:
            task_id = values.identifier("task_id", task_id)
        wanted = (states,) if isinstance(states, str) else tuple(states)
        for state in wanted:
            if state not in RUN_STATES:
                raise InvalidValue("states", f"{state!r} is not one of {', '.join(RUN_STATES)}")
        if owner is not None:
            owner = values.text("owner", owner, max_chars=values.MAX_ID_CHARS, empty=True)
        what = "the runs" + ("" if task_id is None else f" of task {task_id!r}")
        return await self._running.read(
            lambda c: runs.list_runs(
                c, task_id=task_id, states=wanted, after=after, limit=limit, owner=owner
            ),
            what=_paged(what, after),
        )

    async def suspended_runs(
        self, *, after: str | None = None, limit: int = 100
    ) -> Page[RunRecord]:
        return await self._running.read(
            lambda c: runs.list_runs(
                c,
                task_id=None,
                states=("sleeping", "waiting"),
                after=after,
                limit=limit,
                owner=None,
            ),
            what=_paged("the suspended runs", after),
        )

    async def finish_run(
        self,
        run_key: str,
        state: str,
        *,
        reason: str | None = None,
        now: datetime,
        answers: Mapping[str, Any] | None = None,
    ) -> RunRecord | None:
        run_key = values.identifier("run_key", run_key)
        if state not in FINAL_RUN_STATES:
            raise InvalidValue(
                "state", f"expected one of {', '.join(sorted(FINAL_RUN_STATES))}, got {state!r}"
            )
        why = self._reason(reason)
        now = values.instant("now", now)
        encoded = runs.encode_answers(query_answers("answers", answers), self.settings)
        return await self._running.write(
            lambda c: runs.finish_run(c, run_key, state, why, now, answers=encoded)
        )

    async def latest_attempt(self, task_id: str, scheduled_at: datetime) -> ExecutionRecord | None:
        task_id = values.identifier("task_id", task_id)
        scheduled_at = values.instant("scheduled_at", scheduled_at)
        key = run_key_of(task_id, scheduled_at)
        return await self._running.read(
            lambda c: task_executions.latest_attempt(c, key),
            what=f"the latest attempt of run {key!r}",
        )

    async def run_children(self, parent_key: str) -> tuple[RunRecord, ...]:
        parent_key = values.identifier("parent_key", parent_key)
        return await self._running.read(
            lambda c: runs.run_children(c, parent_key), what=f"the children of run {parent_key!r}"
        )

    async def stranded_runs(self, *, after: str | None = None, limit: int = 100) -> Page[RunRecord]:
        return await self._running.read(
            lambda c: runs.stranded_runs(c, after=after, limit=limit),
            what=_paged("the stranded runs", after),
        )

    def _reason(self, reason: str | None) -> str | None:
        """A run's reason as kept: cut to ``max_error_chars``; None or empty: none."""
        if reason is None:
            return None
        values.message("reason", reason)
        return values.truncated(reason, self.settings.max_error_chars) or None

    # ------------------------------------------------------------ retention

    async def run_retention(
        self,
        *,
        now: datetime,
        retention_days: float | None = None,
        max_executions: int | None = None,
    ) -> RetentionReport:
        """Deletes in chunks of ``retention_chunk_rows``, each its own write, so other writes
        interleave and no single statement holds the thread (or the GIL) for long.
        """
        days = self.settings.retention_days if retention_days is None else retention_days
        days = values.seconds("retention_days", days, high=36_500.0)
        keep = self.settings.max_executions if max_executions is None else max_executions
        keep = values.count("max_executions", keep)
        cutoff = values.instant("now", now) - timedelta(days=days)
        expired = await self._chunks(partial(retention.delete_executions_before, cutoff=cutoff))
        count = await self._running.read(retention.count_executions, what="the execution count")
        excess = count - keep
        over = 0
        while over < excess:
            step = min(excess - over, self.settings.retention_chunk_rows)
            deleted = await self._running.write(
                partial(retention.delete_oldest_executions, count=step)
            )
            over += deleted
            if deleted < step:
                break
        letters = await self._chunks(partial(retention.delete_dead_letters_before, cutoff=cutoff))
        ended = await self._chunks(partial(retention.delete_final_runs_before, cutoff=cutoff))
        steps = await self._chunks(retention.delete_orphan_steps)
        freed = 0
        while step := await self._running.call(partial(_free, _VACUUM_PAGES)):
            freed += step
        return RetentionReport(
            executions_expired=expired,
            executions_over_cap=over,
            dead_letters_expired=letters,
            pages_freed=freed,
            cutoff=cutoff,
            steps_deleted=steps,
            runs_deleted=ended,
        )

    async def _chunks(self, delete: Callable[..., int]) -> int:
        chunk = self.settings.retention_chunk_rows
        total = 0
        while True:
            deleted = await self._running.write(partial(delete, chunk=chunk))
            total += deleted
            if deleted < chunk:
                return total

    # ------------------------------------------------------------ the lease

    async def acquire_lease(
        self, name: str, holder: str, *, ttl_s: float, now: datetime
    ) -> LeaseGrant:
        name, holder = values.identifier("name", name), values.identifier("holder", holder)
        ttl_s = values.seconds("ttl_s", ttl_s, low=0.001, high=MAX_LEASE_S)
        now = values.instant("now", now)
        return await self._running.write(lambda c: leases.acquire(c, name, holder, ttl_s, now))

    async def renew_lease(
        self, name: str, holder: str, token: int, *, ttl_s: float, now: datetime
    ) -> Lease:
        name, holder = values.identifier("name", name), values.identifier("holder", holder)
        token = values.count("token", token, low=1)
        ttl_s = values.seconds("ttl_s", ttl_s, low=0.001, high=MAX_LEASE_S)
        now = values.instant("now", now)
        return await self._running.write(
            lambda c: leases.renew(c, name, holder, token, ttl_s=ttl_s, now=now)
        )

    async def release_lease(self, name: str, holder: str, token: int, *, now: datetime) -> bool:
        name, holder = values.identifier("name", name), values.identifier("holder", holder)
        token = values.count("token", token, low=1)
        now = values.instant("now", now)
        return await self._running.write(lambda c: leases.release(c, name, holder, token, now))


def _paged(what: str, cursor: str | None) -> str:
    """What a page read reads, in an error's words: its cursor tells one page from another."""
    return what if cursor is None else f"{what} after cursor {cursor!r}"


def _fire(run_key: str, task_id: str, scheduled_at: datetime) -> tuple[str, datetime]:
    """The task and instant of the fire ``run_key`` names, checked; InvalidValue names
    ``run_key`` if it is not that fire's key."""
    task_id = values.identifier("task_id", task_id)
    scheduled_at = values.instant("scheduled_at", scheduled_at)
    check_run_key("run_key", run_key, task_id, scheduled_at)
    return task_id, scheduled_at


def _entries(name: str, items: Sequence[T], kind: type[T], low: int, high: int) -> tuple[T, ...]:
    """``items`` as a tuple of ``low`` to ``high`` instances of ``kind``; InvalidValue names the
    count or the first entry of another type (``runs[3]``)."""
    batch = tuple(items)
    if not low <= len(batch) <= high:
        raise InvalidValue(name, f"has {len(batch)} entries, expected {low}..{high}")
    for index, item in enumerate(batch):
        if not isinstance(item, kind):
            raise InvalidValue(
                f"{name}[{index}]", f"expected a {kind.__name__}, got {type(item).__name__}"
            )
    return batch


def _finished(
    outcome: Outcome[Recorded[ExecutionRecord]],
) -> Recorded[ExecutionRecord] | StoreError:
    if outcome.error is None:
        assert outcome.value is not None
        return outcome.value
    if isinstance(outcome.error, StoreError):
        return outcome.error
    raise outcome.error


def _free(pages: int, database: Database) -> int:
    return database.free_pages(pages)
