"""One encrypted libSQL connection: opening and checking the file, pragmas, migrations, group
commits, rekeying, backups and integrity checks.

Blocking and not thread-safe: the store calls it from its one database thread
(``store.worker``) and nowhere else.

What the engine says goes out as one of the store's errors: an SQL error (libsql raises
ValueError) as StoreError; a damaged page or a stored value libSQL cannot decode (it panics on a
text that is not UTF-8) as Damaged; a libsql panic, which derives from BaseException, as
EngineFailure; a write the file refuses (disk full, read-only, failing) as WriteRefused. What a
group commit runs, and how one operation's failure is translated: ``store.operations``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import libsql

from store._files import copy_durably
from store._sql import Connection, rows, scalar
from store.errors import (
    NOT_OURS,
    Damaged,
    EngineFailure,
    StoreError,
    WriteRefused,
    WrongKey,
    engine_damage,
    engine_failure,
    engine_refusal,
)
from store.keys import DatabaseKey
from store.operations import Operation, Outcome, run_batched, translated
from store.schema import MIGRATIONS, Migration, current_version, migrate

T = TypeVar("T")

_HEX_KEY = re.compile(r"[0-9a-f]{64}")
WRONG_KEY = "wrong key or not a taskbus database"

# Pages of write-ahead log after which a commit also checkpoints (SQLite's default: 1,000).
# Every group of records rewrites the same hot index pages (each task's newest leaf), and a
# checkpoint copies each page once however often it was rewritten: checkpointing every ~33 MB
# rather than every ~4 MB made durable group commits 10-30 % faster (docs/store.md, §10). It
# changes nothing of durability (a checkpoint fsyncs the log, then the file, in any mode); the
# log file grows to that size, and each checkpoint holds the thread longer (~20 ms).
WAL_AUTOCHECKPOINT_PAGES = 8_000


class Database:
    """The store's file, encrypted with ``key``; ``synchronous`` is ``full`` or ``normal``."""

    def __init__(
        self,
        path: Path,
        key: DatabaseKey,
        *,
        synchronous: str = "full",
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> None:
        self.path = path
        self._key = key
        self._synchronous = synchronous
        self._migrations = migrations
        self._connection: Connection | None = None
        self._lock_fd: int | None = None
        self.commit_seconds = 0.0  # time spent in COMMIT (log writes, fsync, checkpoints)

    # ------------------------------------------------------------ open and close

    def open(self, now_us: int, key: DatabaseKey | None = None) -> list[Migration]:
        """Open (creating a new file if there is none), check the key, migrate.

        ``key`` replaces the key given at construction. Returns the migrations applied. Raises
        StoreError naming the file if it is in use by another store, if the key is wrong or the
        file is not a taskbus database, or if it is newer than this version of taskbus.
        """
        if key is not None:
            self._key = key
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock()
        try:
            new = not self.path.exists() or self.path.stat().st_size == 0
            if not new:
                self._probe_key()
            self._connection = self._connect(self._key)
            connection = self._connection
            tables = scalar(connection, "SELECT count(*) FROM sqlite_master WHERE type = 'table'")
            if tables and current_version(connection) == 0:
                raise WrongKey(
                    f"cannot open store {self.path}: {WRONG_KEY} (it is a database without a "
                    f"schema_version table)"
                )
            if new:
                self.path.chmod(0o600)  # its log and shared-memory files inherit the mode
                connection.execute("PRAGMA auto_vacuum = INCREMENTAL")  # only before any table
            self._configure()
            return migrate(connection, self._migrations, now_us)
        except ValueError as exc:  # an SQL error reading the schema: a damaged file, say
            self.close()
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    def _configure(self) -> None:
        self._set_journal_mode("wal")
        self.connection.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
        scalar(self.connection, f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")

    def probe(self) -> None:
        """One cheap read of the schema: raises what the engine raises if the connection is
        unusable (libsql panics on a connection it has closed, for one)."""
        scalar(self.connection, "SELECT count(*) FROM sqlite_master")

    def reconnect(self) -> None:
        """A new connection to the file, with the same key and pragmas, keeping the lock (the
        file was checked and migrated when it was opened). Raises StoreError naming the file if
        it does not open."""
        self.close(release_lock=False)
        self._connection = self._connect(self._key)
        try:
            self._configure()
        except BaseException as exc:
            self.close(release_lock=False)
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot reopen store {self.path}: {exc}") from exc

    def _probe_key(self) -> None:
        """Check the key on a read-only, ``immutable`` connection, which touches no file.

        Opening a database that has a write-ahead log (after a crash) with a wrong key through an
        ordinary connection destroys it: closing that connection checkpoints the log with the
        wrong key into the main file and deletes the log. So the key is tried on page 1 alone
        first, where a wrong key can do no harm.
        """
        uri = f"file:{urllib.parse.quote(str(self.path.absolute()))}?immutable=1"
        try:
            probe = libsql.connect(uri, encryption_key=self._key.secret, _uri=True)
        except (ValueError, OSError) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        try:
            scalar(probe, "PRAGMA user_version")
        except ValueError as exc:
            if "not a database" in str(exc):
                raise WrongKey(f"cannot open store {self.path}: {WRONG_KEY}") from exc
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        finally:
            probe.close()

    def _connect(self, key: DatabaseKey) -> Connection:
        try:
            connection: Connection = libsql.connect(
                str(self.path), encryption_key=key.secret, isolation_level=None
            )
        except (ValueError, OSError) as exc:
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        try:
            # The first read of page 1 is what decrypts: a wrong key fails here.
            scalar(connection, "SELECT count(*) FROM sqlite_master")
        except ValueError as exc:
            connection.close()
            if "not a database" in str(exc):
                raise WrongKey(f"cannot open store {self.path}: {WRONG_KEY}") from exc
            raise StoreError(f"cannot open store {self.path}: {exc}") from exc
        return connection

    def _lock(self) -> None:
        """One store per file: a second process gets a clear error instead of lock timeouts."""
        if self._lock_fd is not None:
            return
        lock_path = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StoreError(
                f"cannot open store {self.path}: it is in use by another process (pid {holder})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode("ascii"))
        self._lock_fd = fd

    def close(self, *, release_lock: bool = True) -> None:
        """Close the connection (which checkpoints and removes the write-ahead log) and, unless
        told not to, give up the file lock.
        """
        if self._connection is not None:
            try:
                self._connection.close()
            except BaseException as exc:  # closing a broken connection may panic, too
                if isinstance(exc, NOT_OURS):
                    raise
            finally:
                self._connection = None
        if release_lock and self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            raise StoreError(f"store {self.path} is not open")
        return self._connection

    @property
    def key(self) -> DatabaseKey:
        return self._key

    @property
    def is_open(self) -> bool:
        return self._connection is not None

    # ------------------------------------------------------------ work

    def read(self, operation: Operation[T]) -> T:
        """Run a read outside any transaction (it sees every committed write)."""
        return translated(operation, self.connection, self.path)

    def commit_group(self, operations: Sequence[Operation[Any]]) -> list[Outcome[Any]]:
        """Run ``operations`` in one transaction and commit once.

        Consecutive BatchOperations of one class run as one batch (a multi-row statement rather
        than one statement each); an operation the batch refuses up front is reported in its
        Outcome, having written nothing, and the others go on. An operation that raises is
        undone alone and reported in its Outcome while the others commit: the group first runs
        without savepoints (the common case, and the cheap one); if an operation (or a batch)
        raised, it is rolled back and run again, one operation at a time, each in a savepoint.
        If the commit itself fails, every operation failed: that raises StoreError and nothing
        of the group is in the database; WriteRefused if the file takes no writes (the disk is
        full...), which fails the whole group too (SQLite has rolled it back).
        """
        connection = self.connection
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                outcomes = run_batched(operations, connection, self.path)
            except Exception as exc:
                failure = exc
            else:
                started = time.perf_counter()
                connection.execute("COMMIT")
                self.commit_seconds += time.perf_counter() - started
                return outcomes
            if engine_refusal(failure) is not None:
                raise failure
            connection.execute("ROLLBACK")
        except Exception as exc:
            self._rollback()
            raise self._write_failure(exc) from exc
        if len(operations) == 1:
            return [Outcome(error=failure)]
        return self._commit_isolated(operations)

    def _commit_isolated(self, operations: Sequence[Operation[Any]]) -> list[Outcome[Any]]:
        connection = self.connection
        outcomes: list[Outcome[Any]] = []
        failed: Exception | None = None  # the last operation that failed, if the group ends
        try:
            connection.execute("BEGIN IMMEDIATE")
            for operation in operations:
                connection.execute("SAVEPOINT operation")
                try:
                    value = translated(operation, connection, self.path)
                except Exception as exc:
                    if engine_refusal(exc) is not None:
                        raise  # the transaction is gone: the group fails as one
                    failed = exc  # if SQLite rolled the transaction back, this is why
                    connection.execute("ROLLBACK TO operation")
                    failed = None
                    connection.execute("RELEASE operation")
                    outcomes.append(Outcome(error=exc))
                else:
                    connection.execute("RELEASE operation")
                    outcomes.append(Outcome(value=value))
            connection.execute("COMMIT")
        except Exception as exc:
            self._rollback()
            cause = exc if failed is None else failed
            raise self._write_failure(cause) from cause
        return outcomes

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):
            self.connection.execute("ROLLBACK")

    def rollback(self) -> None:
        """Roll back a transaction left open (by a panic, say); nothing if there is none."""
        try:
            self._rollback()
        except BaseException as exc:
            if isinstance(exc, NOT_OURS):
                raise

    def _write_failure(self, exc: Exception) -> StoreError:
        """The error a whole group fails with: WriteRefused if the file takes no writes,
        Damaged if a page it needs is damaged, else "commit failed" with the engine's reason."""
        refusal = engine_refusal(exc)
        if refusal is not None:
            return WriteRefused(self.path, refusal)
        if isinstance(exc, Damaged | EngineFailure):
            return exc
        damage = engine_damage(exc)
        if damage is not None:
            return Damaged(self.path, "", damage)
        return StoreError(f"store {self.path}: commit failed, nothing written: {exc}")

    # ------------------------------------------------------------ maintenance

    def integrity_check(self) -> list[str]:
        """SQLite's ``integrity_check``: ``["ok"]`` for a sound file, else the problems found,
        the error that stopped the check among them (a page so damaged that SQLite gives up on
        the whole check says only "database disk image is malformed").

        SQLite does not look into the values: a text that is not UTF-8 passes; see
        ``LibsqlStore.integrity_check`` for the check that reads every row.
        """
        try:
            return [str(row[0]) for row in rows(self.connection, "PRAGMA integrity_check")]
        except BaseException as exc:
            failure = engine_failure(exc) or (str(exc) if isinstance(exc, ValueError) else None)
            if failure is None:
                raise
            return [f"integrity_check stopped: {failure}"]

    def vacuum(self) -> tuple[int, int]:
        """``VACUUM`` (rebuild the file without free pages) and ``ANALYZE`` (refresh the
        planner's statistics), then empty the log; returns the page count before and after.
        """
        before = int(rows(self.connection, "PRAGMA page_count")[0][0])
        self.connection.execute("VACUUM")
        self.connection.execute("ANALYZE")
        self.checkpoint()
        return before, int(rows(self.connection, "PRAGMA page_count")[0][0])

    def checkpoint(self) -> None:
        """Move the whole write-ahead log into the main file and empty the log."""
        busy, _, _ = rows(self.connection, "PRAGMA wal_checkpoint(TRUNCATE)")[0]
        if busy:
            raise StoreError(f"store {self.path}: checkpoint blocked by another connection")

    def backup(self, destination: Path) -> None:
        """A copy of the file as it is now, encrypted with the current key, written durably.

        The store's thread is the only writer, so nothing changes between the checkpoint and the
        end of the copy.
        """
        self.checkpoint()
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        copy_durably(self.path, destination)

    def rekey(self, key: DatabaseKey) -> None:
        """Re-encrypt every page with ``key``, in one transaction of the rollback journal.

        libSQL refuses ``PRAGMA rekey`` in WAL mode, so the log is checkpointed and the journal
        switched to DELETE around it, then back to WAL.
        """
        if not _HEX_KEY.fullmatch(key.secret):  # inlined below: pragmas take no parameters
            raise StoreError("a database key must be 64 lowercase hex digits")
        self.checkpoint()
        self._set_journal_mode("delete")
        try:
            result = rows(self.connection, f"PRAGMA rekey = '{key.secret}'")
        finally:
            self._set_journal_mode("wal")
        if result and result[0][0] != "ok":
            raise StoreError(f"store {self.path}: rekey failed: {result[0][0]}")
        self._key = key

    def free_pages(self, limit: int | None = None) -> int:
        """Give up to ``limit`` free pages back to the file system; returns how many were freed.

        libsql's ``execute`` refuses ``PRAGMA incremental_vacuum`` ("Execute returned rows"), so
        it goes through ``executescript``.
        """
        connection = self.connection
        before = int(scalar(connection, "PRAGMA freelist_count"))
        if before:
            count = "" if limit is None else f"({int(limit)})"
            connection.executescript(f"PRAGMA incremental_vacuum{count};")
        return before - int(scalar(connection, "PRAGMA freelist_count"))

    def _set_journal_mode(self, mode: str) -> None:
        result = scalar(self.connection, f"PRAGMA journal_mode = {mode.upper()}")
        if str(result).lower() != mode:
            raise StoreError(f"store {self.path}: cannot switch the journal to {mode} ({result})")
