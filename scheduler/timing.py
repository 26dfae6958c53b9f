"""The upcoming fire of every task, ordered by due instant: a heap with lazy invalidation.

``schedule`` (add or move) and ``remove`` are O(log n) amortised; ``next_due`` is O(1) amortised
(stale heads are dropped as they surface); ``pop_due(now)`` is O(k log n) for k due fires. Moving
or removing a task does not search the heap: the task's current entry is remembered by its
sequence number and any other entry for it is stale, skipped when it reaches the top. The heap is
rebuilt when stale entries outnumber live ones, so memory stays O(live tasks).

Nothing here reads a clock: ``now`` is an argument.
"""

from __future__ import annotations

import heapq
import itertools
from datetime import datetime

from scheduler._instants import utc

_Entry = tuple[datetime, int, str]  # (due, sequence, task_id); sequences are unique
_MIN_COMPACT = 1024


class FireQueue:
    """At most one pending fire per task; ties on the due instant go in scheduling order."""

    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._live: dict[str, tuple[datetime, int]] = {}  # task_id -> (due, sequence)
        self._sequence = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._live

    def due_of(self, task_id: str) -> datetime | None:
        """The pending fire of ``task_id``, or None."""
        entry = self._live.get(task_id)
        return entry[0] if entry else None

    def schedule(self, task_id: str, due: datetime) -> None:
        """Set the pending fire of ``task_id`` to ``due``, replacing any earlier one."""
        due = utc("due", due)
        sequence = next(self._sequence)
        self._live[task_id] = (due, sequence)
        heapq.heappush(self._heap, (due, sequence, task_id))
        self._compact_if_stale()

    def remove(self, task_id: str) -> bool:
        """Forget the pending fire of ``task_id``; False if it had none."""
        found = self._live.pop(task_id, None) is not None
        if found:
            self._drop_stale_head()
            self._compact_if_stale()
        return found

    def next_due(self) -> tuple[str, datetime] | None:
        """The task whose fire is due first, and that instant; None if the queue is empty."""
        self._drop_stale_head()
        if not self._heap:
            return None
        due, _, task_id = self._heap[0]
        return task_id, due

    def pop_due(self, now: datetime) -> list[tuple[str, datetime]]:
        """Remove and return every fire due at or before ``now``, earliest first.

        The tasks are no longer in the queue; the caller schedules each one's next fire.
        """
        now = utc("now", now)
        popped: list[tuple[str, datetime]] = []
        while (head := self.next_due()) is not None and head[1] <= now:
            heapq.heappop(self._heap)
            del self._live[head[0]]
            popped.append(head)
        return popped

    def delay_until_next(self, now: datetime) -> float | None:
        """Seconds from ``now`` to the first fire (0 if already due); None if nothing is queued."""
        head = self.next_due()
        if head is None:
            return None
        return max(0.0, (head[1] - utc("now", now)).total_seconds())

    def _is_live(self, entry: _Entry) -> bool:
        current = self._live.get(entry[2])
        return current is not None and current[1] == entry[1]

    def _drop_stale_head(self) -> None:
        while self._heap and not self._is_live(self._heap[0]):
            heapq.heappop(self._heap)

    def _compact_if_stale(self) -> None:
        if len(self._heap) > max(_MIN_COMPACT, 2 * len(self._live)):
            self._heap = [(due, seq, task_id) for task_id, (due, seq) in self._live.items()]
            heapq.heapify(self._heap)
