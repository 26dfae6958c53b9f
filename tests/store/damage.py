"""Damaging a real store file the way a bad disk does (not collected): one byte flipped on disk.

The file is encrypted page by page (aes256cbc), so a byte flipped on disk scrambles the bytes
around it once its page is decrypted. Flipped inside a stored text, that text is no longer
UTF-8, and libsql 0.1.11 panics when it reads it (``pyo3_runtime.PanicException``, a
BaseException); SQLite's own integrity check does not notice. Where in the file a given value
lies cannot be seen from outside, so ``find_panicking_flip`` tries bytes in a fixed order until
one makes the chosen read panic (or, at the start of a page, makes SQLite give up on it) while
every other row stays readable: the same fixture always gives the same flip.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import libsql

from store import MasterKey

PAGE = 4096
# Where in a page to try first: the middle of a page full of one long text, then around it.
OFFSETS = (2048, 1024, 3072, 1536, 2560, 512, 3584)


@dataclass(frozen=True, slots=True)
class Flip:
    """The byte at ``offset`` of the file, XOR ``mask``; and what the chosen read then raised
    (libsql's panic message, or SQLite's error)."""

    offset: int
    mask: int
    error: str

    def apply(self, path: Path) -> None:
        """Flip the byte (again: flipping twice restores it)."""
        with path.open("r+b") as file:
            file.seek(self.offset)
            byte = file.read(1)[0]
            file.seek(self.offset)
            file.write(bytes([byte ^ self.mask]))


def read_all(path: Path, key: MasterKey, sql: str, params: Sequence[object] = ()) -> list[object]:
    """Rows of ``sql`` on a read-only, ``immutable`` connection (it writes no file at all)."""
    uri = f"file:{urllib.parse.quote(str(path.absolute()))}?immutable=1"
    connection = libsql.connect(uri, encryption_key=key.database_key().secret, _uri=True)
    try:
        return list(connection.execute(sql, tuple(params)).fetchall())
    finally:
        connection.close()


def find_panicking_flip(
    path: Path,
    key: MasterKey,
    damaged: tuple[str, Sequence[object]],
    sound: Sequence[tuple[str, Sequence[object]]],
) -> Flip:
    """The first byte (by offset within a page in ``OFFSETS`` order, then by page; page 1, the
    header, is left alone) whose flip makes the query ``damaged`` panic with a Utf8Error while
    every query of ``sound`` still reads. The file (closed, without a write-ahead log) is left
    as it was; apply the flip with ``Flip.apply``. Fails if no byte does.
    """
    return _find(path, key, damaged, sound, offsets=OFFSETS, breaks=_panic)


def find_malforming_flip(
    path: Path,
    key: MasterKey,
    damaged: tuple[str, Sequence[object]],
    sound: Sequence[tuple[str, Sequence[object]]],
) -> Flip:
    """Like ``find_panicking_flip``, for the first byte of a page (its b-tree header) whose
    flip makes SQLite give up on ``damaged``: "database disk image is malformed"."""
    return _find(path, key, damaged, sound, offsets=(0,), breaks=_malformed)


def page_count(path: Path) -> int:
    return path.stat().st_size // PAGE


def _find(
    path: Path,
    key: MasterKey,
    damaged: tuple[str, Sequence[object]],
    sound: Sequence[tuple[str, Sequence[object]]],
    *,
    offsets: Sequence[int],
    breaks: Callable[[Path, MasterKey, str, Sequence[object]], str | None],
) -> Flip:
    assert not path.with_name(path.name + "-wal").exists(), "close the store first"
    pages = page_count(path)
    sql, params = damaged
    for offset in offsets:
        for page in range(1, pages):
            flip = Flip(page * PAGE + offset, 0x01, "")
            flip.apply(path)
            try:
                error = breaks(path, key, sql, params)
                if error is not None and all(_reads(path, key, *query) for query in sound):
                    return Flip(flip.offset, flip.mask, error)
            finally:
                flip.apply(path)
    raise AssertionError(f"no flip in {pages} pages of {path} breaks {sql!r}")


def _malformed(path: Path, key: MasterKey, sql: str, params: Sequence[object]) -> str | None:
    try:
        read_all(path, key, sql, params)
    except ValueError as exc:
        return str(exc) if "malformed" in str(exc) else None
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
    return None


def _panic(path: Path, key: MasterKey, sql: str, params: Sequence[object]) -> str | None:
    try:
        read_all(path, key, sql, params)
    except BaseException as exc:  # what libsql raises for a damaged value: a PanicException
        if type(exc).__name__ == "PanicException" and "Utf8Error" in str(exc):
            return str(exc)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
    return None


def _reads(path: Path, key: MasterKey, sql: str, params: Sequence[object]) -> bool:
    try:
        read_all(path, key, sql, params)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        return False
    return True
