"""Changing the database key without a moment where the file is half old key, half new.

``PRAGMA rekey`` rewrites every page in place, and libSQL refuses it in WAL mode. Rather than
rekey the live file, the store works on a copy:

1. checkpoint, then copy the file to ``backup`` (it stays encrypted with the old key);
2. copy it again to ``<db>.rekey``, open that with the old key, switch its journal to DELETE,
   ``PRAGMA rekey``, switch back to WAL, close; open it with the new key and run
   ``integrity_check``;
3. close the live database and ``rename`` the copy over it (atomic), then reopen with the new key.

All of it runs as one call on the store's thread, so no write lands between the copy and the
rename: writes wait and commit afterwards under the new key. Until step 3 the live file is
untouched; after it, the whole file is under the new key.

With the key in a file, the new master key waits in ``master.key.next`` until the database is
done. At start, a database that no longer opens with ``master.key`` but does with
``master.key.next`` (the rotation stopped after the swap) promotes it; a leftover
``master.key.next`` beside a database that opens with ``master.key`` (it stopped before) is
removed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from store._files import copy_durably, sync_directory
from store.database import Database
from store.errors import StoreError, WrongKey
from store.keys import DatabaseKey, MasterKey, read_key_file
from store.schema import Migration

log = logging.getLogger("taskbus.store")


def open_finishing_rotation(
    database: Database, *, master: MasterKey, pending: Path | None, now_us: int
) -> tuple[MasterKey, list[Migration]]:
    """Open ``database`` with ``master``'s key, or finish a rotation cut short after its swap.

    ``pending`` is ``master.key.next`` beside the key file (None when the key is not in a file).
    Returns the master key that opened the database and the migrations applied.
    """
    try:
        applied = database.open(now_us)
    except WrongKey:
        if pending is None or not pending.exists():
            raise
        successor = read_key_file(pending)
        applied = database.open(now_us, key=successor.database_key())
        key_file = pending.with_name(pending.name.removesuffix(".next"))
        os.replace(pending, key_file)
        sync_directory(key_file.parent)
        log.warning("store %s: finished an interrupted key rotation", database.path)
        return MasterKey(successor.secret, f"file {key_file}"), applied
    if pending is not None and pending.exists():
        pending.unlink()
        log.warning("store %s: discarded the key of a rotation that never ran", database.path)
    return master, applied


def work_path(path: Path) -> Path:
    return path.with_name(path.name + ".rekey")


def remove_work_files(path: Path) -> None:
    """The leftovers of a rekey interrupted before its rename (never the live file)."""
    work = work_path(path)
    for leftover in (work, *(work.with_name(work.name + s) for s in ("-wal", "-shm", ".lock"))):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def rekey_by_copy(database: Database, key: DatabaseKey, backup: Path, now_us: int) -> None:
    """Re-encrypt ``database`` under ``key``; ``backup`` keeps a copy under the old key."""
    old_key = database.key
    database.backup(backup)
    work = work_path(database.path)
    remove_work_files(database.path)
    try:
        copy_durably(backup, work)
        copy = Database(work, old_key)
        copy.open(now_us)
        try:
            copy.rekey(key)
        finally:
            copy.close()
        check = Database(work, key)
        check.open(now_us)
        try:
            problems = check.integrity_check()
        finally:
            check.close()
        if problems != ["ok"]:
            raise StoreError(f"rekeyed copy {work} failed its integrity check: {problems[:5]}")
        _swap(database, work, key, now_us)
    finally:
        remove_work_files(database.path)


def _swap(database: Database, work: Path, key: DatabaseKey, now_us: int) -> None:
    database.close(release_lock=False)
    log = database.path.with_name(database.path.name + "-wal")
    try:
        if log.exists() and log.stat().st_size:
            raise StoreError(f"store {database.path}: the write-ahead log survived the close")
        os.replace(work, database.path)
        sync_directory(database.path.parent)
    except BaseException:
        database.open(now_us)  # the live file is untouched: carry on under the old key
        raise
    with contextlib.suppress(FileNotFoundError):
        database.path.with_name(database.path.name + "-shm").unlink()
    database.open(now_us, key=key)
