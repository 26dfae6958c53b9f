"""Retention: deleting the executions and dead letters older than the retention, the oldest
executions beyond the cap, and the steps of runs none of whose attempts is kept, in chunks
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


def delete_orphan_steps(connection: Connection, chunk: int) -> int:
    """Delete up to ``chunk`` steps of runs that no kept execution belongs to: none whose
    idempotency key is the run key, or the run key followed by ``#<retry>`` (the keys from
    ``run_key || '#'`` up to ``run_key || '$'``, found through the key's index)."""
    return connection.execute(
        "DELETE FROM run_steps WHERE step_id IN (SELECT s.step_id FROM run_steps AS s "
        "WHERE NOT EXISTS (SELECT 1 FROM task_executions AS e "
        "WHERE e.idempotency_key = s.run_key) "
        "AND NOT EXISTS (SELECT 1 FROM task_executions AS e "
        "WHERE e.idempotency_key > s.run_key || '#' AND e.idempotency_key < s.run_key || '$') "
        "LIMIT ?)",
        [chunk],
    ).rowcount
