"""Key rotation: after it the old key fails and the new one works, no acknowledged row is lost,
the backup opens with the old key, and a rotation cut short is finished or undone at start.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from store import LibsqlStore, MasterKey, NewExecution, StoreError, WrongKey
from store.keys import read_key_file, replace_key_file
from tests.store.conftest import StoreFactory, at


def fire(task_id: str, n: int) -> NewExecution:
    return NewExecution(task_id=task_id, scheduled_at=at(n), started_at=at(n))


async def runs(store: LibsqlStore, task_id: str) -> int:
    return (await store.stats(task_id=task_id)).overall.runs


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith((".next", ".rekey")))


async def test_after_a_rekey_the_old_key_fails_the_new_works_and_no_row_is_lost(
    make_store: StoreFactory, data_dir: Path, db_path: Path
) -> None:
    store = await make_store()
    old = read_key_file(data_dir / "master.key")
    for n in range(300):
        await store.record_execution(fire("t.before", n))

    # writes keep arriving while the key changes; each acknowledged one must survive
    during = [asyncio.ensure_future(store.record_execution(fire("t.during", n))) for n in range(50)]
    report = await store.rekey()
    await asyncio.gather(*during)
    await store.record_execution(fire("t.after", 0))
    assert await store.integrity_check() == ["ok"]
    await store.close()

    new = read_key_file(data_dir / "master.key")
    assert new.secret != old.secret
    assert report.key_source == f"file {data_dir / 'master.key'}"
    assert report.backup.parent == data_dir
    assert report.backup_key_file == report.backup.with_name(report.backup.name + ".key")
    assert read_key_file(report.backup_key_file).secret == old.secret
    assert stat.S_IMODE(report.backup.stat().st_mode) == 0o600
    assert leftovers(data_dir) == []

    with pytest.raises(WrongKey):
        await make_store(master_key=old)
    reopened = await make_store()
    assert [await runs(reopened, t) for t in ("t.before", "t.during", "t.after")] == [300, 50, 1]
    assert await reopened.integrity_check() == ["ok"]
    await reopened.close()

    backup = await make_store(path=report.backup, master_key=old)
    assert await runs(backup, "t.before") == 300
    await backup.close()
    with pytest.raises(WrongKey):
        await make_store(path=report.backup, master_key=new)


async def test_a_host_supplied_key_is_rotated_only_to_a_key_the_host_gives(
    make_store: StoreFactory,
) -> None:
    old, new = MasterKey.generate("host"), MasterKey.generate("host")
    store = await make_store(master_key=old)
    await store.record_execution(fire("t.host", 0))
    with pytest.raises(StoreError, match=r"pass the new key to rekey\(\)"):
        await store.rekey()
    report = await store.rekey(new)
    assert report.backup_key_file is None
    assert report.key_source == "host"
    await store.close()
    with pytest.raises(WrongKey):
        await make_store(master_key=old)
    assert await runs(await make_store(master_key=new), "t.host") == 1


async def test_a_rotation_cut_short_before_the_swap_is_undone_at_start(
    make_store: StoreFactory, data_dir: Path
) -> None:
    store = await make_store()
    await store.record_execution(fire("t.cut", 0))
    await store.close()
    current = read_key_file(data_dir / "master.key")
    replace_key_file(data_dir / "master.key.next", MasterKey.generate())  # never applied

    reopened = await make_store()
    assert await runs(reopened, "t.cut") == 1
    assert read_key_file(data_dir / "master.key").secret == current.secret
    assert leftovers(data_dir) == []


async def test_a_rotation_cut_short_after_the_swap_is_finished_at_start(
    make_store: StoreFactory, data_dir: Path, db_path: Path
) -> None:
    store = await make_store()
    await store.record_execution(fire("t.cut", 0))
    await store.close()
    old = read_key_file(data_dir / "master.key")
    new = MasterKey.generate()
    # the database is under the new key, but master.key was not replaced yet
    rekeying = await make_store(master_key=MasterKey(old.secret, "the test"))
    await rekeying.rekey(new)
    await rekeying.close()
    replace_key_file(data_dir / "master.key.next", new)

    reopened = await make_store()
    assert await runs(reopened, "t.cut") == 1
    assert read_key_file(data_dir / "master.key").secret == new.secret
    assert leftovers(data_dir) == []
    assert reopened.key_source == f"file {data_dir / 'master.key'}"


async def test_a_leftover_rekey_copy_is_removed_at_start(
    make_store: StoreFactory, db_path: Path
) -> None:
    store = await make_store()
    await store.close()
    (db_path.parent / "taskbus.db.rekey").write_bytes(b"half a copy")
    await make_store()
    assert leftovers(db_path.parent) == []
