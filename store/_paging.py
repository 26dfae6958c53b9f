"""Keyset pagination: the cursors of the store's pages, and how long a page may be.

A cursor holds the sort key of the last item a page returned, so a page costs one index seek
whatever its depth, and rows written meanwhile neither repeat nor vanish. A page in key order
(tasks, unsettled executions) is continued from the key itself; a page newest first (history,
dead letters, missed runs) from ``<microseconds>:<key>``.
"""

from __future__ import annotations

from store import values
from store._sql import Row
from store.errors import InvalidValue

MAX_PAGE = 1_000


def check_limit(limit: object) -> int:
    return values.count("limit", limit, low=1, high=MAX_PAGE)


def key_cursor(row: Row) -> str:
    """The cursor of a page in key order (tasks, unsettled executions): the row's key."""
    return str(row[0])


def time_cursor(micros: int, key: object) -> str:
    return f"{micros}:{key}"


def parse_time_cursor(cursor: str) -> tuple[int, str]:
    micros, separator, key = cursor.partition(":")
    try:
        if not separator or not key:
            raise ValueError(cursor)
        return int(micros), key
    except ValueError:
        raise InvalidValue("cursor", "is not a cursor this store returned") from None


def parse_int_time_cursor(cursor: str) -> tuple[int, int]:
    """A time cursor whose key is an integer id (dead letters, missed runs)."""
    micros, key = parse_time_cursor(cursor)
    try:
        return micros, int(key)
    except ValueError:
        raise InvalidValue("cursor", "is not a cursor this store returned") from None
