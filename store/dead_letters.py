"""``dead_letters``: the fires given up on, one row per fire (task id, scheduled instant).

Plain functions of a connection, on the store's thread, every value bound as a parameter. A
write is one operation of a group commit (it raises having left nothing behind); the dead letters
are read in keyset pages, latest failure first (``store._paging``, ``store.salvage``).
"""

from __future__ import annotations

from config.store import StoreSettings
from store import salvage, values
from store._paging import check_limit, parse_int_time_cursor, time_cursor
from store._sql import Connection, Row, one
from store.records import DeadLetterRecord, NewDeadLetter, Page, Recorded

DEAD_LETTER_COLUMNS = (
    "dead_letter_id, task_id, scheduled_at, attempts, error_type, last_error, reason, failed_at"
)


def dead_letter_from_row(row: Row) -> DeadLetterRecord:
    return DeadLetterRecord(
        dead_letter_id=row[0],
        task_id=row[1],
        scheduled_at=values.from_us(row[2]),
        attempts=row[3],
        error_type=row[4],
        last_error=row[5],
        reason=row[6],
        failed_at=values.from_us(row[7]),
    )


def add_dead_letter(
    connection: Connection, letter: NewDeadLetter, limits: StoreSettings
) -> Recorded[DeadLetterRecord]:
    """Keep a fire given up on; the same fire twice writes nothing (a duplicate)."""
    key = [letter.task_id, values.to_us(letter.scheduled_at)]
    row = one(
        connection,
        "INSERT INTO dead_letters (task_id, scheduled_at, attempts, error_type, last_error, "
        "reason, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT (task_id, scheduled_at) DO NOTHING RETURNING {DEAD_LETTER_COLUMNS}",
        [
            *key,
            letter.attempts,
            letter.error_type,
            values.truncated(letter.last_error, limits.max_error_chars),
            letter.reason,
            values.to_us(letter.failed_at),
        ],
    )
    if row is not None:
        return Recorded(dead_letter_from_row(row), duplicate=False)
    existing = one(
        connection,
        f"SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE task_id = ? AND scheduled_at = ?",
        key,
    )
    assert existing is not None
    return Recorded(dead_letter_from_row(existing), duplicate=True)


def dead_letters(
    connection: Connection, task_id: str | None, before: str | None, limit: int
) -> Page[DeadLetterRecord]:
    """Dead letters, latest failure first, of one task or of all."""
    limit = check_limit(limit)
    conditions: list[str] = []
    params: list[object] = []
    if task_id is not None:
        conditions.append("task_id = ?")
        params.append(task_id)
    if before is not None:
        conditions.append("(failed_at, dead_letter_id) < (?, ?)")
        params.extend(parse_int_time_cursor(before))
    where = f"WHERE {' AND '.join(conditions)} " if conditions else ""
    found = salvage.page_rows(
        connection,
        "dead_letters",
        DEAD_LETTER_COLUMNS,
        f"{where}ORDER BY failed_at DESC, dead_letter_id DESC LIMIT ?",
        [*params, limit + 1],
    )
    return salvage.page(
        found,
        limit,
        dead_letter_from_row,
        lambda row: time_cursor(row[7], row[0]),
        table="dead_letters",
        key="dead_letter_id",
    )
