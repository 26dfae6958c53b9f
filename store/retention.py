"""Retention: deleting the executions and dead letters older than the retention, the oldest
executions beyond the cap, the runs that ended before the retention (with their inboxes), and
the steps of runs none of whose attempts is kept (unless the run has not ended), in chunks
(``LibsqlStore.run_retention`` runs each chunk as its own write, so that other writes
interleave).
"""

from __future__ import annotations

from datetime import datetime

from store import values
from store._sql import Connection, scalar


def count_executions(connection: Connection) -> int:
    return int(scalar(connection, "SELECT count(*) FROM task_executions"))


def delete_executions_before(connection: Connection, cutoff: datetime, chunk: int) -> int:
    """Delete up to ``chunk`` of the oldest executions started before ``cutoff``."""
    return connection.execute(
        "DELETE FROM task_executions WHERE execution_id IN (SELECT execution_id "
        "FROM task_executions WHERE started_at < ? ORDER BY started_at LIMIT ?)",
        [values.to_us(cutoff), chunk],
    ).rowcount


def delete_oldest_executions(connection: Connection, count: int) -> int:
    """Delete the ``count`` executions that started first."""
    return connection.execute(
        "DELETE FROM task_executions WHERE execution_id IN (SELECT execution_id "
        "FROM task_executions ORDER BY started_at, execution_id LIMIT ?)",
        [count],
    ).rowcount


def delete_dead_letters_before(connection: Connection, cutoff: datetime, chunk: int) -> int:
    return connection.execute(
        "DELETE FROM dead_letters WHERE dead_letter_id IN (SELECT dead_letter_id "
        "FROM dead_letters WHERE failed_at < ? ORDER BY failed_at LIMIT ?)",
        [values.to_us(cutoff), chunk],
    ).rowcount


def delete_final_runs_before(connection: Connection, cutoff: datetime, chunk: int) -> int:
    """Delete up to ``chunk`` of the runs that ended (succeeded, failed, cancelled) and were
    last changed before ``cutoff``, and their inboxes; returns how many runs."""
    ended = (
        "SELECT run_key FROM runs WHERE state IN ('succeeded', 'failed', 'cancelled') "
        "AND updated_at < ?1 ORDER BY updated_at LIMIT ?2"
    )
    params = [values.to_us(cutoff), chunk]
    connection.execute(f"DELETE FROM run_inbox WHERE run_key IN ({ended})", params)
    return connection.execute(f"DELETE FROM runs WHERE run_key IN ({ended})", params).rowcount


def delete_orphan_steps(connection: Connection, chunk: int) -> int:
    """Delete up to ``chunk`` steps of runs that no kept execution belongs to (none whose
    idempotency key is the run key, or the run key followed by ``#<retry>``: the keys from
    ``run_key || '#'`` up to ``run_key || '$'``, found through the key's index) and that are
    not suspended or running by their ``runs`` row (a run that has not ended keeps its steps,
    whatever became of its executions)."""
    return connection.execute(
        "DELETE FROM run_steps WHERE step_id IN (SELECT s.step_id FROM run_steps AS s "
        "WHERE NOT EXISTS (SELECT 1 FROM task_executions AS e "
        "WHERE e.idempotency_key = s.run_key) "
        "AND NOT EXISTS (SELECT 1 FROM task_executions AS e "
        "WHERE e.idempotency_key > s.run_key || '#' AND e.idempotency_key < s.run_key || '$') "
        "AND NOT EXISTS (SELECT 1 FROM runs AS r WHERE r.run_key = s.run_key "
        "AND r.state NOT IN ('succeeded', 'failed', 'cancelled')) "
        "LIMIT ?)",
        [chunk],
    ).rowcount
