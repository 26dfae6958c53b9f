"""Encryption at rest: nothing readable on disk, and a wrong key or a foreign file is refused
with a clear error that leaves every file as it was.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import libsql
import pytest

from store import (
    MASTER_KEY_ENV,
    ExecutionOutcome,
    MasterKey,
    NewDeadLetter,
    NewExecution,
    StoreError,
    TaskSpec,
    WrongKey,
)
from tests.store.conftest import StoreFactory, at, file_hashes

ROOT = Path(__file__).resolve().parents[2]
MARKERS = (
    "zebra-task-7f3a",
    "hunter2-violet",
    "marmalade-umbrella",
    "kaleidoscope-failure",
    "quasar-dead-letter",
)


async def test_no_stored_text_is_readable_in_any_file(
    make_store: StoreFactory, data_dir: Path
) -> None:
    store = await make_store()
    task_id = f"user.{MARKERS[0]}"
    await store.put_task(
        TaskSpec(task_id=task_id, task_class="Job", schedule="@daily", config={"p": MARKERS[1]}),
        now=at(0),
    )
    for n in range(200):  # enough to spill into several pages of the log
        await store.record_execution(
            NewExecution(
                task_id=task_id,
                scheduled_at=at(n),
                started_at=at(n),
                outcome=ExecutionOutcome(
                    completed_at=at(n + 1),
                    success=n % 2 == 0,
                    result={"r": MARKERS[2]},
                    error_message=MARKERS[3],
                ),
            )
        )
    await store.add_dead_letter(
        NewDeadLetter(
            task_id=task_id,
            scheduled_at=at(0),
            attempts=1,
            error_type="E",
            last_error=MARKERS[4],
            reason="r",
            failed_at=at(1),
        )
    )
    assert (await store.task_status(task_id)).runs == 200

    def readable() -> dict[str, list[str]]:
        found = {}
        for path in data_dir.iterdir():
            data = path.read_bytes()
            hits = [m for m in MARKERS if m.encode() in data or m.encode("utf-16-le") in data]
            if hits:
                found[path.name] = hits
        return found

    assert (data_dir / "taskbus.db-wal").stat().st_size > 0  # the log is checked while live
    assert readable() == {}
    await store.close()
    assert (data_dir / "taskbus.db").stat().st_size > 20_000
    assert readable() == {}


async def test_a_wrong_key_is_refused_naming_the_file_and_changes_nothing(
    make_store: StoreFactory, data_dir: Path, db_path: Path
) -> None:
    store = await make_store()
    await store.put_task(
        TaskSpec(task_id="user.kept", task_class="J", schedule="@daily"), now=at(0)
    )
    await store.close()
    before = file_hashes(data_dir)

    with pytest.raises(WrongKey) as caught:
        await make_store(master_key=MasterKey.generate())
    assert str(caught.value) == (
        f"cannot open store {db_path}: wrong key or not a taskbus database"
    )
    assert isinstance(caught.value, StoreError)
    assert file_hashes(data_dir) == before

    reopened = await make_store()
    assert (await reopened.get_task("user.kept")).task_id == "user.kept"


async def test_a_wrong_key_after_a_crash_leaves_the_write_ahead_log_intact(
    make_store: StoreFactory, data_dir: Path, db_path: Path
) -> None:
    """Through a plain libSQL connection, a wrong key would checkpoint the log of a crashed
    store into the main file and delete it, destroying the database; the store never does.
    """
    key = MasterKey.generate()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.store.child",
        str(db_path),
        "die-after",
        "50",
        cwd=ROOT,
        env={**os.environ, MASTER_KEY_ENV: key.secret.hex()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    assert stdout.decode().splitlines() == ["ready", "done"]
    assert (data_dir / "taskbus.db-wal").stat().st_size > 0
    before = file_hashes(data_dir)

    with pytest.raises(WrongKey, match="wrong key or not a taskbus database"):
        await make_store(master_key=MasterKey.generate())
    assert file_hashes(data_dir) == before

    store = await make_store(master_key=key)
    assert (await store.stats(task_id="crash.single")).overall.runs == 50


def truncate(path: Path, divisor: int) -> None:
    with path.open("r+b") as file:
        file.truncate(path.stat().st_size // divisor)


@pytest.fixture
def foreign_files(tmp_path: Path) -> dict[str, Path]:
    """Files that are not taskbus databases, each alone in its own directory."""
    made: dict[str, Path] = {}

    def place(name: str) -> Path:
        path = tmp_path / name / "taskbus.db"
        path.parent.mkdir()
        made[name] = path
        return path

    place("random").write_bytes(os.urandom(16_384))
    place("text").write_text("this is a shopping list\n" * 200)
    plain = sqlite3.connect(place("plain_sqlite"))
    plain.execute("CREATE TABLE notes (body TEXT)")
    plain.execute("INSERT INTO notes VALUES ('not encrypted')")
    plain.commit()
    plain.close()
    return made


@pytest.mark.parametrize("kind", ["random", "text", "plain_sqlite"])
async def test_a_foreign_file_is_refused_and_left_alone(
    make_store: StoreFactory, foreign_files: dict[str, Path], kind: str
) -> None:
    path = foreign_files[kind]
    before = file_hashes(path.parent)
    with pytest.raises(WrongKey) as caught:
        await make_store(path=path, master_key=MasterKey.generate())
    assert str(caught.value) == f"cannot open store {path}: wrong key or not a taskbus database"
    assert file_hashes(path.parent) == before


async def test_an_encrypted_database_without_taskbus_tables_is_refused(
    make_store: StoreFactory, db_path: Path
) -> None:
    key = MasterKey.generate()
    db_path.parent.mkdir(parents=True)
    other = libsql.connect(str(db_path), encryption_key=key.database_key().secret)
    other.execute("CREATE TABLE photos (name TEXT)")
    other.commit()
    other.close()
    before = file_hashes(db_path.parent)
    with pytest.raises(WrongKey, match="without a schema_version table"):
        await make_store(master_key=key)
    assert file_hashes(db_path.parent) == before


async def test_a_truncated_database_is_refused_with_a_store_error(
    make_store: StoreFactory, db_path: Path
) -> None:
    key = MasterKey.generate()
    store = await make_store(master_key=key)
    for n in range(300):
        await store.record_execution(
            NewExecution(task_id="t.x", scheduled_at=at(n), started_at=at(n))
        )
    await store.close()
    truncate(db_path, 3)
    with pytest.raises(StoreError) as caught:
        await make_store(master_key=key)
    assert str(caught.value) == f"cannot open store {db_path}: database disk image is malformed"


async def test_a_second_store_on_the_same_file_is_refused(
    make_store: StoreFactory, db_path: Path
) -> None:
    await make_store()
    with pytest.raises(StoreError, match=rf"{db_path}: it is in use by another process \(pid "):
        await make_store()
