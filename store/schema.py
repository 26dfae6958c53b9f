"""The store's tables and their ordered migrations.

Every instant is an INTEGER of microseconds since the Unix epoch, UTC. Structured values (a task's
config and policies, an execution's result) are msgpack BLOBs. ``schema_version`` has one row per
migration applied; migrations run in order at start, each in its own transaction.

Version 1 is the layout of the AICO scheduler design (tasks and their executions); version 2 adds
what taskbus needs: time zones, policies, owners and row versions on tasks; one execution per
fire, made idempotent by ``idempotency_key`` (task id and scheduled instant); dead letters; and the
scheduler lease with its fencing token. Version 3 adds a task's run policy, missed runs (fires that
did not run, one row per fire or per range of them), and the index that finds the executions a
scheduler must look at again after a takeover. Version 4 adds the instant through which each
task's fires are accounted for, from which a scheduler taking over plans what is owed. Version 5
records which cron rules each schedule was written under (croniter's own reading before, Vixie
cron's from then on), so that a schedule whose meaning changed can say so. Version 6 tells the truth
about runs: each execution carries its task's incarnation (the ``created_at`` of the task row it
ran for, so that an id deleted and created again starts an empty history), what made it
(``trigger``), when it really started (``run_started_at``, after any wait to be admitted) and
the lines it logged (``logs``). Version 7 keeps the steps of runs (``run_steps``): one row per
(run key, step name), the run key being a fire's key shared by all its attempts, so that a retried
or re-dispatched run finds the steps it finished. Version 8 makes runs durable: a ``runs`` row
for each run that suspended (slept, waited for a signal, was paused), got a signal, was
cancelled or was started with a start key; and each run's inbox of signals (``run_inbox``).
Version 10 lets a task be paused with a note (``paused``, ``note``: the note also says why the
scheduler disabled a task) and counts its fires (``fire_count``) for ``run_policy.max_runs``.
"""

from __future__ import annotations

from dataclasses import dataclass

from store._sql import Connection, scalar
from store.errors import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
)"""

V1_TASKS_AND_EXECUTIONS = Migration(
    1,
    "scheduled tasks and their executions (AICO scheduler layout)",
    (
        """CREATE TABLE scheduled_tasks (
            task_id    TEXT PRIMARY KEY,
            task_class TEXT NOT NULL,
            schedule   TEXT NOT NULL,
            config     BLOB,
            enabled    INTEGER NOT NULL DEFAULT 1,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            last_run   INTEGER,
            next_run   INTEGER
        )""",
        """CREATE TABLE task_executions (
            execution_id     TEXT PRIMARY KEY,
            task_id          TEXT NOT NULL,
            started_at       INTEGER NOT NULL,
            completed_at     INTEGER,
            success          INTEGER,
            duration_seconds REAL,
            result           BLOB,
            error_message    TEXT,
            retry_count      INTEGER NOT NULL DEFAULT 0
        )""",
        "CREATE INDEX task_executions_task_started ON task_executions (task_id, started_at)",
    ),
)

V2_TASKBUS = Migration(
    2,
    "task policies and versions, idempotent executions, dead letters, scheduler lease",
    (
        "ALTER TABLE scheduled_tasks ADD COLUMN timezone TEXT NOT NULL DEFAULT 'UTC'",
        "ALTER TABLE scheduled_tasks ADD COLUMN misfire_policy BLOB",
        "ALTER TABLE scheduled_tasks ADD COLUMN retry_policy BLOB",
        "ALTER TABLE scheduled_tasks ADD COLUMN owner TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE scheduled_tasks ADD COLUMN version INTEGER NOT NULL DEFAULT 1",
        "CREATE INDEX scheduled_tasks_next_run ON scheduled_tasks (next_run) WHERE enabled = 1",
        """CREATE TABLE task_executions_v2 (
            execution_id     TEXT PRIMARY KEY,
            task_id          TEXT NOT NULL,
            scheduled_at     INTEGER NOT NULL,
            started_at       INTEGER NOT NULL,
            completed_at     INTEGER,
            success          INTEGER CHECK (success IN (0, 1)),
            duration_seconds REAL,
            result           BLOB,
            error_message    TEXT,
            retry_count      INTEGER NOT NULL DEFAULT 0,
            idempotency_key  TEXT NOT NULL UNIQUE
        )""",
        # Version 1 had no scheduled instant: its start stands in for it. Two old runs of one
        # task that started in the same microsecond keep distinct keys.
        """INSERT INTO task_executions_v2
            SELECT execution_id, task_id, started_at, started_at, completed_at, success,
                   duration_seconds, result, error_message, retry_count,
                   task_id || '@' || started_at || CASE
                       WHEN ROW_NUMBER() OVER (
                           PARTITION BY task_id, started_at ORDER BY execution_id) = 1
                       THEN '' ELSE '#' || execution_id END
            FROM task_executions""",
        "DROP TABLE task_executions",
        "ALTER TABLE task_executions_v2 RENAME TO task_executions",
        """CREATE INDEX task_executions_history
            ON task_executions (task_id, started_at, execution_id)""",
        "CREATE INDEX task_executions_started ON task_executions (started_at)",
        """CREATE INDEX task_executions_failures
            ON task_executions (task_id, started_at, execution_id) WHERE success = 0""",
        """CREATE TABLE dead_letters (
            dead_letter_id INTEGER PRIMARY KEY,
            task_id        TEXT NOT NULL,
            scheduled_at   INTEGER NOT NULL,
            attempts       INTEGER NOT NULL,
            error_type     TEXT NOT NULL,
            last_error     TEXT NOT NULL,
            reason         TEXT NOT NULL,
            failed_at      INTEGER NOT NULL,
            UNIQUE (task_id, scheduled_at)
        )""",
        "CREATE INDEX dead_letters_failed ON dead_letters (failed_at, dead_letter_id)",
        """CREATE INDEX dead_letters_task
            ON dead_letters (task_id, failed_at, dead_letter_id)""",
        """CREATE TABLE scheduler_lease (
            name       TEXT PRIMARY KEY,
            holder     TEXT,
            expires_at INTEGER NOT NULL,
            token      INTEGER NOT NULL
        )""",
    ),
)

V3_RUN_POLICIES_AND_MISSED_RUNS = Migration(
    3,
    "run policies and missed runs",
    (
        "ALTER TABLE scheduled_tasks ADD COLUMN run_policy BLOB",
        # One fire that did not run (count 1, first_at = last_at), or a range of them. The index
        # of UNIQUE (task_id, first_at) makes a repeated record a no-op, and serves one task's
        # listing newest first (its entries end with the rowid, missed_id): no other index.
        """CREATE TABLE missed_runs (
            missed_id   INTEGER PRIMARY KEY,
            task_id     TEXT NOT NULL,
            first_at    INTEGER NOT NULL,
            last_at     INTEGER NOT NULL,
            count       INTEGER NOT NULL,
            reason      TEXT NOT NULL,
            recorded_at INTEGER NOT NULL,
            UNIQUE (task_id, first_at)
        )""",
        # The unsettled executions: only running and failed ones, in execution id order. (A
        # later attempt of the same fire is found through the idempotency key, whose index
        # already holds every attempt of a fire together: another index on task_executions
        # would cost every record about a fifth of its time.)
        """CREATE INDEX task_executions_unsettled
            ON task_executions (execution_id) WHERE success IS NULL OR success = 0""",
    ),
)

V4_ACCOUNTED_THROUGH = Migration(
    4,
    "the instant through which each task's fires are accounted for",
    (
        # Every instant of a task's schedule after accounted_through is owed: run, coalesced or
        # recorded as missed by whichever scheduler leads next. A task stored before this
        # version owes the instants after its last fire, or after its last change if it never
        # fired (a reset or a new task: the leader then counted from that moment).
        "ALTER TABLE scheduled_tasks ADD COLUMN accounted_through INTEGER",
        "UPDATE scheduled_tasks SET accounted_through = coalesce(last_run, updated_at)",
    ),
)

V5_CRON_RULES = Migration(
    5,
    "the cron rules each task's schedule was written under",
    (
        # 2: Vixie/Debian cron (config.cron), for every schedule written from now on; the ones
        # stored before were written under croniter's own reading (1) until they are rewritten.
        "ALTER TABLE scheduled_tasks ADD COLUMN cron_rules INTEGER NOT NULL DEFAULT 2",
        "UPDATE scheduled_tasks SET cron_rules = 1",
    ),
)

V6_TRUTHFUL_HISTORY = Migration(
    6,
    "executions: the task's incarnation, the trigger, the real start and the run's log lines",
    (
        "ALTER TABLE task_executions ADD COLUMN incarnation INTEGER",
        "ALTER TABLE task_executions ADD COLUMN trigger TEXT",
        "ALTER TABLE task_executions ADD COLUMN run_started_at INTEGER",
        "ALTER TABLE task_executions ADD COLUMN logs BLOB",
        # A run recorded since the task row was created is of that incarnation; an older one
        # (of an id deleted and created again) stays NULL: kept, but no longer the task's.
        """UPDATE task_executions SET incarnation = (
            SELECT t.created_at FROM scheduled_tasks AS t
            WHERE t.task_id = task_executions.task_id
            AND t.created_at <= task_executions.started_at)""",
    ),
)

V7_RUN_STEPS = Migration(
    7,
    "the recorded steps of runs",
    (
        # One finished step of a run: its result (msgpack, as {"value": result}) or its final
        # error. The UNIQUE index makes a second write of a step a no-op (the first one wins)
        # and serves a run's listing; retention finds a run's steps through it too.
        """CREATE TABLE run_steps (
            step_id     INTEGER PRIMARY KEY,
            run_key     TEXT NOT NULL,
            name        TEXT NOT NULL,
            status      TEXT NOT NULL,
            result      BLOB,
            error       TEXT,
            attempts    INTEGER NOT NULL,
            started_at  INTEGER NOT NULL,
            finished_at INTEGER NOT NULL,
            size_bytes  INTEGER NOT NULL,
            UNIQUE (run_key, name)
        )""",
    ),
)

V8_DURABLE_RUNS = Migration(
    8,
    "durable runs: their state, start keys and inboxes of signals",
    (
        # One row per run (a fire: all its attempts) that used a durable feature; the others
        # have none. Times in µs; state one of records.RUN_STATES.
        """CREATE TABLE runs (
            run_key      TEXT PRIMARY KEY,
            task_id      TEXT NOT NULL,
            scheduled_at INTEGER NOT NULL,
            state        TEXT NOT NULL,
            paused       INTEGER NOT NULL DEFAULT 0,
            wake_at      INTEGER,
            waiting      TEXT,
            consumed     INTEGER NOT NULL DEFAULT 0,
            attempt      INTEGER NOT NULL DEFAULT 1,
            wakes        INTEGER NOT NULL DEFAULT 0,
            parent_key   TEXT,
            spawn_key    TEXT,
            start_key    TEXT,
            reason       TEXT,
            created_at   INTEGER NOT NULL,
            updated_at   INTEGER NOT NULL
        )""",
        """CREATE UNIQUE INDEX runs_start_key ON runs (task_id, start_key)
            WHERE start_key IS NOT NULL""",
        "CREATE INDEX runs_wake ON runs (state, wake_at)",
        "CREATE INDEX runs_task ON runs (task_id, scheduled_at)",
        # The signals sent to runs, in one global order (seq); a payload is msgpack of
        # {"value": payload}, like a step's result.
        """CREATE TABLE run_inbox (
            seq        INTEGER PRIMARY KEY,
            run_key    TEXT NOT NULL,
            name       TEXT NOT NULL,
            payload    BLOB,
            sender     TEXT NOT NULL,
            sent_at    INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL
        )""",
        "CREATE INDEX run_inbox_run ON run_inbox (run_key, name, seq)",
    ),
)

V9_RUN_TREE_AND_ANSWERS = Migration(
    9,
    "child runs and the stored answers of runs to queries",
    (
        # What a child run does when its parent is cancelled: 'cancel' (be cancelled too) or
        # 'abandon' (run on).
        "ALTER TABLE runs ADD COLUMN on_parent_cancel TEXT NOT NULL DEFAULT 'cancel'",
        # The run's answers to its queries (msgpack of {"value": {name: answer}}), kept with its
        # suspensions and its finish.
        "ALTER TABLE runs ADD COLUMN answers BLOB",
        # A run's children, found by its key.
        "CREATE INDEX runs_parent ON runs (parent_key) WHERE parent_key IS NOT NULL",
    ),
)

V10_PAUSE_AND_FIRE_COUNT = Migration(
    10,
    "tasks: paused with a note, and the count of their fires",
    (
        # A paused task does not fire; its note (printable text) says why it is paused, or why
        # the scheduler disabled it (``reached max_runs N``).
        "ALTER TABLE scheduled_tasks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE scheduled_tasks ADD COLUMN note TEXT",
        # The first attempts of the task's schedule, catch-up and backfill fires recorded (not
        # triggers, retries or wakes); a task stored before this version starts at 0.
        "ALTER TABLE scheduled_tasks ADD COLUMN fire_count INTEGER NOT NULL DEFAULT 0",
    ),
)

MIGRATIONS: tuple[Migration, ...] = (
    V1_TASKS_AND_EXECUTIONS,
    V2_TASKBUS,
    V3_RUN_POLICIES_AND_MISSED_RUNS,
    V4_ACCOUNTED_THROUGH,
    V5_CRON_RULES,
    V6_TRUTHFUL_HISTORY,
    V7_RUN_STEPS,
    V8_DURABLE_RUNS,
    V9_RUN_TREE_AND_ANSWERS,
    V10_PAUSE_AND_FIRE_COUNT,
)
LATEST_VERSION = MIGRATIONS[-1].version


def check_migrations(migrations: tuple[Migration, ...]) -> None:
    """Versions must be 1, 2, 3... in order, so that "applied up to n" means the first n."""
    for expected, migration in enumerate(migrations, start=1):
        if migration.version != expected:
            raise StoreError(
                f"migration {migration.description!r} has version {migration.version}, "
                f"expected {expected}"
            )


def current_version(connection: Connection) -> int:
    """The highest version applied; 0 for a database without taskbus tables."""
    has_table = scalar(
        connection,
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'",
    )
    if not has_table:
        return 0
    return int(scalar(connection, "SELECT coalesce(max(version), 0) FROM schema_version"))


def migrate(
    connection: Connection, migrations: tuple[Migration, ...], now_us: int
) -> list[Migration]:
    """Apply the migrations the database lacks, oldest first; returns those applied.

    Each runs in one transaction together with its ``schema_version`` row, so a failure leaves the
    database at the previous version. ``connection`` must be in autocommit mode.
    """
    check_migrations(migrations)
    version = current_version(connection)
    latest = migrations[-1].version if migrations else 0
    if version > latest:
        raise StoreError(
            f"the database has schema version {version}, newer than this taskbus knows "
            f"({latest}): upgrade taskbus, or restore a backup made by this version"
        )
    applied = []
    for migration in migrations[version:]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(VERSION_TABLE)
            for statement in migration.statements:
                connection.execute(statement)
            connection.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, now_us),
            )
            connection.execute("COMMIT")
        except Exception as exc:
            connection.execute("ROLLBACK")
            raise StoreError(
                f"migration to schema version {migration.version} ({migration.description}) "
                f"failed: {exc}"
            ) from exc
        applied.append(migration)
    return applied
