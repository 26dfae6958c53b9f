"""The slice of libSQL's DB-API that the store uses, typed, and the error translation.

libsql 0.1.11 raises ``ValueError`` (not ``libsql.Error``) for SQL errors, binds only positional
``?`` parameters, stores a str up to its first NUL, turns integers outside int64 (and -2**63)
into floats, and holds the GIL for the whole of every call (docs/store.md, "libSQL notes").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

Row = tuple[Any, ...]
Params = Sequence[object]

# The bounds of an integer libSQL stores exactly (it converts -2**63 to a float, too).
INT_MIN = -(2**63) + 1
INT_MAX = 2**63 - 1


class Cursor(Protocol):
    rowcount: int

    def fetchall(self) -> list[Row]: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Params = ..., /) -> Cursor: ...

    def executemany(self, sql: str, parameters: Sequence[Params], /) -> Cursor: ...

    def executescript(self, script: str, /) -> Any: ...

    def close(self) -> None: ...


def rows(connection: Connection, sql: str, params: Params = ()) -> list[Row]:
    return connection.execute(sql, tuple(params)).fetchall()


IDS_PER_SELECT = 1_000  # values in one IN (...) list: far below SQLite's bound of 32,766


def rows_in(connection: Connection, select: str, column: str, values: Sequence[Any]) -> list[Row]:
    """``{select} WHERE {column} IN (values)``, each distinct value asked once, in selects of
    at most IDS_PER_SELECT values."""
    unique = list(dict.fromkeys(values))
    found: list[Row] = []
    for first in range(0, len(unique), IDS_PER_SELECT):
        chunk = unique[first : first + IDS_PER_SELECT]
        marks = ", ".join(["?"] * len(chunk))
        found.extend(rows(connection, f"{select} WHERE {column} IN ({marks})", chunk))
    return found


def one(connection: Connection, sql: str, params: Params = ()) -> Row | None:
    """The first row. Every row is fetched: a RETURNING statement left with rows unread stays
    "in progress" in libsql and makes the COMMIT fail.
    """
    found = connection.execute(sql, tuple(params)).fetchall()
    return found[0] if found else None


def scalar(connection: Connection, sql: str, params: Params = ()) -> Any:
    row = one(connection, sql, params)
    return None if row is None else row[0]
