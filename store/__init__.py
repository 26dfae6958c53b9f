"""The store: the scheduler's durable state in one encrypted libSQL file (no bus).

``Store`` is the interface, ``LibsqlStore`` the implementation; ``actors.storing.StoreActor``
serves it on the bus as ``store.*``. Its modules do no messaging and import nothing of taskbus
but ``config``, ``bus.ids`` (execution ids) and ``bus.nesting`` (the nesting limit):

- ``store``: the interface, its invariants and errors; ``libsql_store``: the implementation;
- ``worker``: the one database thread and group commit; ``condition``: what is known to be
  wrong with the file; ``salvage``: reading what can still be read of a damaged page;
- ``database``: the connection (open, key check, pragmas, group transactions, backup, rekey);
  ``operations``: what a group commit runs (Operation, Outcome, BatchOperation);
  ``rekey``: rekeying through a copy; ``schema``: tables and migrations; ``keys``: master key
  and database key;
- ``records``, ``values``: the records and the checks of every stored value; ``errors``;
- the SQL, as plain functions of a connection, one module per table: ``scheduled_tasks``,
  ``task_executions`` (its pages: ``history``; its statistics: ``stats``), ``dead_letters``,
  ``missed_runs``, ``run_steps`` (the recorded steps of runs), ``runs`` (durable runs: their
  state, start keys and inboxes of signals), ``leases`` (the lease and the write ``Fence``);
  ``retention``: the chunked deletes of retention;
- private helpers: ``_sql`` (the typed DB-API), ``_paging`` (keyset cursors), ``_files``.

Reference: docs/store.md.
"""

from store.errors import Conflict, InvalidValue, LeaseLost, NotFound, StoreError, WrongKey
from store.keys import MASTER_KEY_ENV, MASTER_KEY_FILE, DatabaseKey, MasterKey
from store.leases import Fence, LeaseGrant
from store.libsql_store import LibsqlStore, RekeyReport
from store.records import (
    FINAL_RUN_STATES,
    MAX_INBOX_BYTES,
    MAX_INBOX_SIGNALS,
    MAX_SIGNAL_NAME_CHARS,
    ON_PARENT_CANCEL,
    RUN_STATES,
    DeadLetterRecord,
    ExecutionOutcome,
    ExecutionRecord,
    InboxSignal,
    Lease,
    LogLine,
    MissedRunRecord,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    NewSignal,
    Page,
    Recorded,
    RetentionReport,
    RunRecord,
    RunStats,
    RunSuspension,
    StatsReport,
    StepOutcome,
    StepRecord,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    run_key,
)
from store.store import Store

__all__ = [
    "FINAL_RUN_STATES",
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE",
    "MAX_INBOX_BYTES",
    "MAX_INBOX_SIGNALS",
    "MAX_SIGNAL_NAME_CHARS",
    "ON_PARENT_CANCEL",
    "RUN_STATES",
    "Conflict",
    "DatabaseKey",
    "DeadLetterRecord",
    "ExecutionOutcome",
    "ExecutionRecord",
    "Fence",
    "InboxSignal",
    "InvalidValue",
    "Lease",
    "LeaseGrant",
    "LeaseLost",
    "LibsqlStore",
    "LogLine",
    "MasterKey",
    "MissedRunRecord",
    "NewDeadLetter",
    "NewExecution",
    "NewMissedRun",
    "NewSignal",
    "NotFound",
    "Page",
    "Recorded",
    "RekeyReport",
    "RetentionReport",
    "RunRecord",
    "RunStats",
    "RunSuspension",
    "StatsReport",
    "StepOutcome",
    "StepRecord",
    "Store",
    "StoreError",
    "TaskRecord",
    "TaskSpec",
    "TaskStatus",
    "WrongKey",
    "run_key",
]
