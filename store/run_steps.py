"""``run_steps``: the finished steps of runs, one row per (run key, step name).

Plain functions of a connection, on the store's thread, every value bound as a parameter. A
write is one operation of a group commit (it raises having left nothing behind). The run key is
a fire's key (``store.records.run_key``), shared by every attempt of the fire, so that a retry or
a re-dispatch finds the steps its predecessors finished. A result is kept as the msgpack of
``{"value": result}``, checked and encoded before the write (``encode_result``).
"""

from __future__ import annotations

from typing import Any

from config.store import StoreSettings
from store import values
from store._sql import Connection, Row, one, rows
from store.errors import NotFound
from store.records import Recorded, StepOutcome, StepRecord

STEP_COLUMNS = "run_key, name, status, result, error, attempts, started_at, finished_at, size_bytes"


def step_from_row(row: Row) -> StepRecord:
    stored = values.unpacked(row[3])
    return StepRecord(
        run_key=row[0],
        name=row[1],
        status=row[2],
        result=None if stored is None else stored.get("value"),
        error=row[4],
        attempts=row[5],
        started_at=values.from_us(row[6]),
        finished_at=values.from_us(row[7]),
        size_bytes=row[8],
    )


def encode_result(result: Any, limits: StoreSettings) -> bytes:
    """A step's result as stored; InvalidValue names ``result`` if it is not msgpack-able, nests
    too deep or is over ``max_value_bytes`` encoded."""
    data, _ = values.encoded("result", {"value": result}, limits.max_value_bytes)
    assert data is not None
    return data


def put_step(
    connection: Connection,
    run_key: str,
    outcome: StepOutcome,
    encoded: bytes | None,
    limits: StoreSettings,
) -> Recorded[StepRecord]:
    """Keep a step's outcome once: a step already kept for the run is returned as it was
    stored, as a duplicate, and nothing is written. ``encoded``: the result as
    ``encode_result`` made it (None for a failed step)."""
    error = (
        None if outcome.error is None else values.truncated(outcome.error, limits.max_error_chars)
    )
    row = one(
        connection,
        "INSERT INTO run_steps (run_key, name, status, result, error, attempts, started_at, "
        "finished_at, size_bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (run_key, name) DO NOTHING RETURNING {STEP_COLUMNS}",
        [
            run_key,
            outcome.name,
            outcome.status,
            encoded,
            error,
            outcome.attempts,
            values.to_us(outcome.started_at),
            values.to_us(outcome.finished_at),
            0 if encoded is None else len(encoded),
        ],
    )
    if row is not None:
        return Recorded(step_from_row(row), duplicate=False)
    existing = one(
        connection,
        f"SELECT {STEP_COLUMNS} FROM run_steps WHERE run_key = ? AND name = ?",
        [run_key, outcome.name],
    )
    assert existing is not None
    return Recorded(step_from_row(existing), duplicate=True)


def run_steps(connection: Connection, run_key: str) -> tuple[StepRecord, ...]:
    """The steps kept for a run, in the order they were first stored."""
    found = rows(
        connection,
        f"SELECT {STEP_COLUMNS} FROM run_steps WHERE run_key = ? ORDER BY step_id",
        [run_key],
    )
    return tuple(step_from_row(row) for row in found)


def delete_steps(connection: Connection, run_key: str, from_step: str | None) -> tuple[str, ...]:
    """Delete steps of a run so that its next attempt runs them again; their names, in the
    order they were stored. With ``from_step``: that step and every step stored after it (by
    its row id), earlier ones kept (NotFound if the run never stored ``from_step``); without:
    the steps that stored a final error."""
    if from_step is None:
        where, params = "run_key = ? AND status = 'error'", [run_key]
    else:
        found = one(
            connection,
            "SELECT step_id FROM run_steps WHERE run_key = ? AND name = ?",
            [run_key, from_step],
        )
        if found is None:
            raise NotFound(f"run {run_key} has no step {from_step!r}")
        where, params = "run_key = ? AND step_id >= ?", [run_key, found[0]]
    deleted = rows(connection, f"SELECT name FROM run_steps WHERE {where} ORDER BY step_id", params)
    connection.execute(f"DELETE FROM run_steps WHERE {where}", params)
    return tuple(row[0] for row in deleted)
