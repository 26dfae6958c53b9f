"""What the store knows to be wrong with its file: the reads that damage stopped (its actor then
reports ``critical``) and the writes the file refused (``degraded``).

The rules (docs/store.md, §12):

- A read that fails on damage (``Damaged``), or returns a page with rows left out because they
  cannot be read, marks what it read (its own words: "the history of task 'x'"). A later read of
  the same thing that gets everything clears that mark; a read of anything else does not, since
  damage does not heal by itself. A write or a maintenance call stopped by damage marks too.
- An integrity check reads every row: it replaces every mark with what it found, so a clean
  check clears them all, and a check that finds damage no read has met yet reports it.
- A group of writes the file refused (``WriteRefused``: the disk is full, the file read-only, the
  disk failing) sets the refusal with the engine's reason; the next group committed clears it.

Changed and read on the event loop only (the worker hands its outcomes over there).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

MAX_MARKS = 100  # kept; more are counted, not kept
SHOWN = 5  # reasons reported one by one; the rest as a count


class StoreCondition:
    """The marks of the store in ``path``; ``critical()`` and ``degraded()`` give the reasons."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._unreadable: dict[str, str] = {}
        self._uncounted = 0
        self.refusing: str | None = None
        self.died: str | None = None

    # ------------------------------------------------------------ reads

    def unreadable(self, what: str, reason: str) -> None:
        """``what`` could not be read (or only in part), ``reason`` says why."""
        if what in self._unreadable or len(self._unreadable) < MAX_MARKS:
            self._unreadable[what] = reason
        else:
            self._uncounted += 1

    def readable(self, what: str) -> None:
        """``what`` was read in full."""
        self._unreadable.pop(what, None)

    def checked(self, problems: Sequence[str]) -> None:
        """An integrity check found ``problems`` (none: the file is sound)."""
        self._unreadable.clear()
        self._uncounted = 0
        for problem in problems:
            self.unreadable(problem, "")

    # ------------------------------------------------------------ writes

    def write_refused(self, reason: str) -> None:
        self.refusing = reason

    def written(self) -> None:
        self.refusing = None

    # ------------------------------------------------------------ reports

    def critical(self) -> list[str]:
        """One reason per mark, the first few: "store cannot read <path>: <what>: <why>"."""
        reasons = []
        if self.died is not None:
            reasons.append(f"store {self.path}: {self.died}")
        marks = [
            f"store cannot read {self.path}: {what}" + (f": {why}" if why else "")
            for what, why in self._unreadable.items()
        ]
        reasons.extend(marks[:SHOWN])
        more = max(0, len(marks) - SHOWN) + self._uncounted
        if more > 0:
            reasons.append(f"store cannot read {self.path}: {more} more")
        return reasons

    def degraded(self) -> list[str]:
        """While writes are refused: "store refuses writes: <reason>"."""
        return [] if self.refusing is None else [f"store refuses writes: {self.refusing}"]
