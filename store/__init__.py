"""The store: the scheduler's durable state in one encrypted libSQL file, and its actor.

``Store`` is the interface, ``LibsqlStore`` the implementation (one database thread, group
commit), ``StoreActor`` serves it on the bus as ``store.*``. The modules below the actor
(``database``, ``schema``, ``records``, ``keys``, ``queries``, ``writes``, ``leases``) do no
messaging and import nothing of taskbus but ``config`` (and ``bus.ids`` for execution ids).
Reference: docs/store.md.
"""

from actors.store.actor import StoreActor
from actors.store.errors import Conflict, InvalidValue, LeaseLost, NotFound, StoreError, WrongKey
from actors.store.keys import MASTER_KEY_ENV, MASTER_KEY_FILE, DatabaseKey, MasterKey
from actors.store.leases import LeaseGrant
from actors.store.libsql_store import LibsqlStore, RekeyReport
from actors.store.records import (
    DeadLetterRecord,
    ExecutionOutcome,
    ExecutionRecord,
    Lease,
    MissedRunRecord,
    NewDeadLetter,
    NewExecution,
    NewMissedRun,
    Page,
    Recorded,
    RetentionReport,
    RunStats,
    StatsReport,
    TaskRecord,
    TaskSpec,
    TaskStatus,
)
from actors.store.store import Store
from actors.store.writes import Fence

__all__ = [
    "MASTER_KEY_ENV",
    "MASTER_KEY_FILE",
    "Conflict",
    "DatabaseKey",
    "DeadLetterRecord",
    "ExecutionOutcome",
    "ExecutionRecord",
    "Fence",
    "InvalidValue",
    "Lease",
    "LeaseGrant",
    "LeaseLost",
    "LibsqlStore",
    "MasterKey",
    "MissedRunRecord",
    "NewDeadLetter",
    "NewExecution",
    "NewMissedRun",
    "NotFound",
    "Page",
    "Recorded",
    "RekeyReport",
    "RetentionReport",
    "RunStats",
    "StatsReport",
    "Store",
    "StoreActor",
    "StoreError",
    "TaskRecord",
    "TaskSpec",
    "TaskStatus",
    "WrongKey",
]
