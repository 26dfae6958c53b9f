"""Reading what can still be read: the rows of a page one at a time when libSQL cannot hand the
page over, and the scan of every row that the store's integrity check adds to SQLite's.

libsql 0.1.11 panics (``pyo3_runtime.PanicException``) on a stored text that is not UTF-8, which
is what a value on a page damaged on disk decrypts to, and the panic loses the whole statement,
whichever row it met. SQLite itself reads such a row without complaint (its integrity check
passes), and libsql always converts integers: so the rowids of a page's rows can be listed, and
each row read alone. A row that still cannot be read, or whose stored maps do not decode, is left
out of the page and named in ``PartialPage.unreadable``; the others come back whole.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from store._sql import Connection, Params, Row, one, rows, scalar
from store.errors import Damaged, engine_failure
from store.records import Page

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PartialPage(Page[T]):
    """A page with rows left out because they cannot be read; ``unreadable`` names each one
    (table, rowid, key, the columns that cannot be read, the engine's error)."""

    unreadable: tuple[str, ...] = ()


class PartialRow:
    """The columns of an unreadable row that could be read one by one; indexing one that could
    not raises LookupError, so that a cursor built from it fails instead of lying."""

    __slots__ = ("_missing", "_values")

    def __init__(self, values: list[Any], missing: set[int]) -> None:
        self._values = values
        self._missing = missing

    def __getitem__(self, index: int) -> Any:
        if not isinstance(index, int) or index in self._missing:
            raise LookupError(index)
        return self._values[index]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A row libSQL cannot hand over, in place of it in a page's rows."""

    table: str
    rowid: int
    error: str
    row: PartialRow
    key: str = ""  # "task_id 'x'", when the row's key could be read
    columns: tuple[str, ...] = field(default=())  # those that could not be read

    def describe(self) -> str:
        key = f" ({self.key})" if self.key else ""
        which = f"cannot read {', '.join(self.columns)}: " if self.columns else ""
        return f"{self.table} row {self.rowid}{key}: {which}{self.error}"


def page_rows(
    connection: Connection, source: str, columns: str, tail: str, params: Params
) -> Sequence[Row | Unreadable]:
    """The rows of ``SELECT {columns} FROM {source} {tail}``. If libSQL cannot hand them over
    (it panicked), the same rows one at a time by rowid, each one that still cannot be read as
    an Unreadable in its place. ``source`` is one table, perhaps with an alias
    (``task_executions AS e``); an SQL error (a damaged b-tree, say) is raised as it is.
    """
    try:
        return rows(connection, f"SELECT {columns} FROM {source} {tail}", params)
    except BaseException as exc:
        if engine_failure(exc) is None:
            raise
    listed = rows(connection, f"SELECT rowid FROM {source} {tail}", params)
    return [_row(connection, source, columns, int(rowid)) for (rowid,) in listed]


def _row(connection: Connection, source: str, columns: str, rowid: int) -> Row | Unreadable:
    try:
        found = one(connection, f"SELECT {columns} FROM {source} WHERE rowid = ?", [rowid])
    except BaseException as exc:
        error = engine_failure(exc)
        if error is None:
            raise
    else:
        if found is not None:
            return found
        error = "the row is gone"
    names = [column.strip() for column in columns.split(",")]
    values: list[Any] = []
    missing: set[int] = set()
    for index, column in enumerate(names):
        try:
            values.append(
                scalar(connection, f"SELECT {column} FROM {source} WHERE rowid = ?", [rowid])
            )
        except BaseException as exc:
            if engine_failure(exc) is None:
                raise
            values.append(None)
            missing.add(index)
    bare = [name.rpartition(".")[2] for name in names]
    keyed = next((i for i, name in enumerate(bare) if name != "rowid"), None)
    key = "" if keyed is None or keyed in missing else f"{bare[keyed]} {values[keyed]!r}"
    return Unreadable(
        table=source.split(maxsplit=1)[0],
        rowid=rowid,
        error=error,
        row=PartialRow(values, missing),
        key=key,
        columns=tuple(bare[i] for i in sorted(missing)),
    )


def page(
    found: Sequence[Row | Unreadable],
    limit: int,
    convert: Callable[[Row], T],
    cursor: Callable[[Any], str],
    *,
    table: str,
    key: str,
) -> Page[T]:
    """The page of the first ``limit`` of ``found`` (one more: there is more), each row made a
    record by ``convert`` and given its cursor by ``cursor``: every page read ends here.

    A row that cannot be read, or converted (a stored map that does not decode: ValueError), is
    left out and named, and the page is a PartialPage; its ``next_cursor`` continues after the
    last row of the page whose cursor can still be built. Raises Damaged if none can, while there
    is more: paging could not get past them.
    """
    items: list[T] = []
    cursors: list[str] = []
    left_out: list[str] = []
    last: str | None = None
    for entry in found[:limit]:
        if isinstance(entry, Unreadable):
            left_out.append(entry.describe())
            with contextlib.suppress(LookupError):
                last = cursor(entry.row)
            continue
        try:
            item = convert(entry)
        except ValueError as exc:
            left_out.append(f"{table} row with {key} {entry[0]!r}: cannot be decoded: {exc}")
            last = cursor(entry)
            continue
        items.append(item)
        cursors.append(cursor(entry))
        last = cursors[-1]
    more = len(found) > limit
    if not left_out:
        return Page(tuple(items), cursors[-1] if more else None, tuple(cursors))
    if more and last is None:
        raise Damaged("", "", f"no row to continue after: {'; '.join(left_out)}")
    return PartialPage(
        tuple(items), last if more else None, tuple(cursors), unreadable=tuple(left_out)
    )


def scan(
    connection: Connection,
    table: str,
    columns: str,
    convert: Callable[[Row], object],
    *,
    after: int,
    chunk: int,
) -> tuple[list[str], int | None]:
    """What is wrong with the next ``chunk`` rows of ``table`` after rowid ``after``: each row
    libSQL cannot hand over, or ``convert`` cannot make a record of. Returns the problems and
    the last rowid scanned (None: the table is done).
    """
    found = page_rows(
        connection,
        table,
        f"rowid, {columns}",
        "WHERE rowid > ? ORDER BY rowid LIMIT ?",
        [after, chunk],
    )
    problems: list[str] = []
    last = after
    for entry in found:
        if isinstance(entry, Unreadable):
            problems.append(entry.describe())
            last = entry.rowid
            continue
        last = int(entry[0])
        try:
            convert(entry[1:])
        except ValueError as exc:
            key = columns.split(",", maxsplit=1)[0].strip()
            problems.append(f"{table} row {last} ({key} {entry[1]!r}): cannot be decoded: {exc}")
    return problems, (last if len(found) == chunk else None)
