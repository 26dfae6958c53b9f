"""The built-in tasks doing their real job, run by a real executor on a real encrypted store:
retention deletes what is older than its limit, key rotation leaves a database only the new key
opens."""

from __future__ import annotations

import shutil
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import libsql

from config.sections import PathSettings
from config.settings import Settings
from store import MasterKey
from store.records import TaskSpec
from taskbus.assembly import builtin_specs
from tasks import TaskRegistry
from tests.tasks.rig import Rig, Start


def _builtins(tmp_path: Path) -> list[TaskSpec]:
    settings = Settings(paths=PathSettings.under(tmp_path / "data"))
    return builtin_specs(settings, TaskRegistry.with_builtins())


async def _record(rig: Rig, task_id: str, days_ago: float, result_chars: int = 0) -> str:
    started = datetime.now(UTC) - timedelta(days=days_ago)
    reply = await rig.ask(
        "store.execution.record",
        task_id=task_id,
        scheduled_at=started.isoformat(),
        started_at=started.isoformat(),
        completed_at=(started + timedelta(seconds=1)).isoformat(),
        success=True,
        result={"text": "r" * result_chars},
    )
    return str(reply["execution"]["execution_id"])


async def test_log_cleanup_deletes_history_older_than_its_retention(
    start: Start, tmp_path: Path
) -> None:
    rig = await start(category="maintenance", builtin=_builtins(tmp_path))
    old = [await _record(rig, "user.report", days) for days in (31, 45, 400)]
    recent = [await _record(rig, "user.report", days) for days in (1, 29)]
    execution_id = await rig.trigger("maintenance.log_cleanup")
    run = await rig.finished(execution_id)
    assert run["success"] is True, run["error_message"]
    assert run["result"]["executions_expired"] == 3
    for gone in old:
        assert (await rig.refused("store.execution.get", execution_id=gone)).code == "not_found"
    for kept in recent:
        assert (await rig.ask("store.execution.get", execution_id=kept))["execution"]["success"]


def _opens(database: Path, key: MasterKey) -> bool:
    """Whether ``key`` opens a throwaway copy of ``database`` (a wrong key may damage a file)."""
    copy = database.parent / f"copy-{key.secret.hex()[:8]}"
    copy.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{database}{suffix}").exists():
            shutil.copy(f"{database}{suffix}", copy / f"taskbus.db{suffix}")
    connection = libsql.connect(str(copy / "taskbus.db"), encryption_key=key.database_key().secret)
    try:
        return int(connection.execute("SELECT count(*) FROM scheduled_tasks").fetchone()[0]) > 0
    except Exception:  # libsql raises a bare ValueError or its own error class
        return False
    finally:
        connection.close()


async def test_key_rotation_leaves_a_database_only_the_new_key_opens(
    start: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    rig = await start(category="security", builtin=_builtins(tmp_path))
    old_key = MasterKey((data / "master.key").read_bytes())
    execution_id = await rig.trigger("security.key_rotation")
    run = await rig.finished(execution_id)
    assert run["success"] is True, run["error_message"]
    assert run["result"]["integrity_ok"] is True, run["result"]
    new_key = MasterKey((data / "master.key").read_bytes())
    assert new_key != old_key
    assert _opens(data / "taskbus.db", new_key)
    assert not _opens(data / "taskbus.db", old_key)
    listed = await rig.ask("scheduler.task.list")
    assert "security.key_rotation" in {t["task_id"] for t in listed["tasks"]}


async def test_database_vacuum_rebuilds_the_store_and_keeps_every_row(
    start: Start, tmp_path: Path
) -> None:
    """Retention already gives freed pages back (incremental vacuum); VACUUM rebuilds the file
    and ANALYZE refreshes the planner's statistics, and nothing is lost."""
    rig = await start(category="maintenance", builtin=_builtins(tmp_path))
    kept = [await _record(rig, "user.report", days / 10, result_chars=3000) for days in range(50)]
    execution_id = await rig.trigger("maintenance.database_vacuum")
    run = await rig.finished(execution_id)
    assert run["success"] is True, run["error_message"]
    assert run["result"]["pages_before"] > 50
    # ANALYZE adds sqlite_stat1: its page, and its CREATE statement in the schema table, which
    # (since schema version 4's wider task table) no longer fits the schema's first page
    assert run["result"]["pages_after"] <= run["result"]["pages_before"] + 2
    assert (await rig.ask("store.maintenance.integrity_check"))["ok"] is True
    for execution in kept:
        reply = await rig.ask("store.execution.get", execution_id=execution)
        assert reply["execution"]["result"] == {"text": "r" * 3000}


async def test_the_daily_digest_summarises_the_last_day_off_the_loop(
    start: Start, tmp_path: Path, process_pool: ProcessPoolExecutor
) -> None:
    rig = await start(category="agency", builtin=_builtins(tmp_path), process_pool=process_pool)
    for hours in (1, 2, 3):
        await _record(rig, "user.report", hours / 24)
    await _record(rig, "user.report", 3)  # older than a day: not in the digest
    execution_id = await rig.trigger("agency.daily_digest")
    run = await rig.finished(execution_id)
    assert run["success"] is True, run["error_message"]
    digest = run["result"]
    assert (digest["succeeded"], digest["failed"]) == (3, 0)
    assert digest["running"] == 1  # the digest's own run
    assert digest["success_rate"] == 1.0
    assert digest["slowest"][0]["task_id"] == "user.report"
    assert "3 succeeded" in digest["text"]
