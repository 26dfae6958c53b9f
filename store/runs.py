"""``runs`` and ``run_inbox``: the state of durable runs (suspended, signalled, controlled, or
started with a start key) and the signals sent to them.

Plain functions of a connection, on the store's thread, every value bound as a parameter and
``now`` always an argument. A write is one operation of a group commit: it runs inside the
store's transaction (and, when a neighbour in the group fails, its own savepoint), so one that
raises leaves nothing behind; and since one thread runs every write, what a write reads and
then changes cannot change in between (exactly one wake of a run wins).

A run has a row only once it used a durable feature; a row is created lazily, in state
``running``, by the first write that needs one. A payload is kept as the msgpack of
``{"value": payload}``, checked and encoded before the write (``encode_payload``), like a
step's result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from config.store import StoreSettings
from store import run_steps, salvage, values
from store._paging import check_limit, key_cursor
from store._sql import Connection, Row, one, rows, scalar
from store.errors import Conflict, InvalidValue, NotFound
from store.records import (
    MAX_INBOX_BYTES,
    MAX_INBOX_SIGNALS,
    ExecutionRecord,
    InboxSignal,
    NewExecution,
    NewSignal,
    Page,
    RunRecord,
    RunSuspension,
    run_key,
)

RUN_COLUMNS = (
    "run_key, task_id, scheduled_at, state, paused, wake_at, waiting, consumed, attempt, wakes, "
    "parent_key, spawn_key, start_key, reason, created_at, updated_at, on_parent_cancel, answers"
)
# RUN_COLUMNS and the count of the run's signals (what get_run and the pages return).
_COUNTED = f"{RUN_COLUMNS}, (SELECT count(*) FROM run_inbox AS i WHERE i.run_key = runs.run_key)"
SIGNAL_COLUMNS = "seq, run_key, name, payload, sender, sent_at, size_bytes"


def run_from_row(row: Row) -> RunRecord:
    """A run from RUN_COLUMNS, followed by its count of signals if the row has one."""
    stored = values.unpacked(row[17])
    return RunRecord(
        run_key=row[0],
        task_id=row[1],
        scheduled_at=values.from_us(row[2]),
        state=row[3],
        paused=bool(row[4]),
        wake_at=values.maybe_from_us(row[5]),
        waiting=row[6],
        consumed=row[7],
        attempt=row[8],
        wakes=row[9],
        parent_key=row[10],
        spawn_key=row[11],
        start_key=row[12],
        reason=row[13],
        created_at=values.from_us(row[14]),
        updated_at=values.from_us(row[15]),
        on_parent_cancel=row[16],
        answers=None if stored is None else stored.get("value"),
        signals=int(row[18]) if len(row) > 18 else 0,
    )


def signal_from_row(row: Row) -> InboxSignal:
    stored = values.unpacked(row[3])
    return InboxSignal(
        seq=row[0],
        run_key=row[1],
        name=row[2],
        payload=None if stored is None else stored.get("value"),
        sender=row[4],
        sent_at=values.from_us(row[5]),
        size_bytes=row[6],
    )


def encode_payload(payload: Any, limits: StoreSettings) -> bytes:
    """A signal's payload as stored; InvalidValue names ``payload`` if it is not msgpack-able,
    nests too deep or is over ``max_value_bytes`` encoded."""
    data, _ = values.encoded("payload", {"value": payload}, limits.max_value_bytes)
    assert data is not None
    return data


def encode_answers(answers: Any, limits: StoreSettings) -> bytes | None:
    """A run's answers to its queries as stored (None: none given); InvalidValue names
    ``answers`` if they are not msgpack-able, nest too deep or are over ``max_value_bytes``."""
    if answers is None:
        return None
    data, _ = values.encoded("answers", {"value": answers}, limits.max_value_bytes)
    return data


def final_conflict(run: RunRecord) -> Conflict:
    """The refusal of a change to a run that has ended."""
    return Conflict(f"run {run.run_key} is {run.state}")


# ------------------------------------------------------------------ reads


def find_run(connection: Connection, key: str) -> RunRecord | None:
    """The run's row, with its count of signals; None if it has none."""
    row = one(connection, f"SELECT {_COUNTED} FROM runs WHERE run_key = ?", [key])
    return None if row is None else run_from_row(row)


def get_run(connection: Connection, key: str) -> RunRecord:
    run = find_run(connection, key)
    if run is None:
        raise NotFound(f"run {key!r} not found")
    return run


def run_signals(connection: Connection, key: str) -> tuple[InboxSignal, ...]:
    """The run's inbox, in seq order (the order the signals were sent in)."""
    found = rows(
        connection,
        f"SELECT {SIGNAL_COLUMNS} FROM run_inbox WHERE run_key = ? ORDER BY seq",
        [key],
    )
    return tuple(signal_from_row(row) for row in found)


def run_children(connection: Connection, parent_key: str) -> tuple[RunRecord, ...]:
    """The runs spawned by the run ``parent_key`` (their rows name it), in run key order."""
    found = rows(
        connection,
        f"SELECT {_COUNTED} FROM runs WHERE parent_key = ? ORDER BY run_key",
        [parent_key],
    )
    return tuple(run_from_row(row) for row in found)


# The idempotency key of a run's attempt ``attempt`` (1: the run key; n: ``<run key>#<n - 1>``).
_ATTEMPT_KEY = (
    "runs.run_key || CASE WHEN runs.attempt > 1 THEN '#' || (runs.attempt - 1) ELSE '' END"
)


def stranded_runs(connection: Connection, *, after: str | None, limit: int) -> Page[RunRecord]:
    """Runs in state ``running`` whose ``attempt`` has no recorded execution (a scheduler woke
    them, ``wake_run``, and died before recording the wake's fire), in run key order from the
    cursor ``after``."""
    limit = check_limit(limit)
    where = [
        "state = 'running'",
        f"NOT EXISTS (SELECT 1 FROM task_executions AS e WHERE e.idempotency_key = {_ATTEMPT_KEY})",
    ]
    params: list[object] = []
    if after is not None:
        where.append("run_key > ?")
        params.append(values.text("cursor", after, max_chars=values.MAX_TEXT_CHARS))
    params.append(limit + 1)
    found = salvage.page_rows(
        connection,
        "runs",
        _COUNTED,
        f"WHERE {' AND '.join(where)} ORDER BY run_key LIMIT ?",
        params,
    )
    return salvage.page(found, limit, run_from_row, key_cursor, table="runs", key="run_key")


def list_runs(
    connection: Connection,
    *,
    task_id: str | None,
    states: Sequence[str],
    after: str | None,
    limit: int,
    owner: str | None,
) -> Page[RunRecord]:
    """Runs in run key order, from the cursor ``after`` (a run key): only ``task_id``'s, only
    those in ``states`` (all if empty), only those of tasks ``owner`` owns, if given."""
    limit = check_limit(limit)
    where: list[str] = []
    params: list[object] = []
    if after is not None:
        where.append("run_key > ?")
        params.append(values.text("cursor", after, max_chars=values.MAX_TEXT_CHARS))
    if task_id is not None:
        where.append("task_id = ?")
        params.append(task_id)
    if states:
        where.append(f"state IN ({', '.join(['?'] * len(states))})")
        params.extend(states)
    if owner is not None:
        where.append(
            "EXISTS (SELECT 1 FROM scheduled_tasks AS t "
            "WHERE t.task_id = runs.task_id AND t.owner = ?)"
        )
        params.append(owner)
    condition = f"WHERE {' AND '.join(where)} " if where else ""
    params.append(limit + 1)
    found = salvage.page_rows(
        connection, "runs", _COUNTED, f"{condition}ORDER BY run_key LIMIT ?", params
    )
    return salvage.page(found, limit, run_from_row, key_cursor, table="runs", key="run_key")


def available(connection: Connection, run: RunRecord) -> bool:
    """Whether a signal named ``run.waiting`` that the run has not consumed is in its inbox:
    it holds more of them than the ``consumed`` it suspended with."""
    if run.waiting is None:
        return False
    held = scalar(
        connection,
        "SELECT count(*) FROM run_inbox WHERE run_key = ? AND name = ?",
        [run.run_key, run.waiting],
    )
    return int(held) > run.consumed


# ------------------------------------------------------------------ writes


def ensure_run(
    connection: Connection, key: str, task_id: str, scheduled_at: datetime, now: datetime
) -> None:
    """Create the run's row, in state ``running``, if it has none."""
    connection.execute(
        "INSERT INTO runs (run_key, task_id, scheduled_at, state, created_at, updated_at) "
        "VALUES (?, ?, ?, 'running', ?, ?) ON CONFLICT (run_key) DO NOTHING",
        [key, task_id, values.to_us(scheduled_at), values.to_us(now), values.to_us(now)],
    )


def _wake(connection: Connection, key: str, now: datetime) -> RunRecord:
    """Mark a suspended run woken: running, one more wake, one more attempt."""
    connection.execute(
        "UPDATE runs SET state = 'running', wakes = wakes + 1, attempt = attempt + 1, "
        "wake_at = NULL, waiting = NULL, updated_at = ? WHERE run_key = ?",
        [values.to_us(now), key],
    )
    return get_run(connection, key)


def suspend_run(
    connection: Connection, suspension: RunSuspension, answers: bytes | None = None
) -> RunRecord:
    """Record that an attempt suspended: the run sleeps (until ``wake_at``; with None, until a
    resume) or waits for a signal, paused if it was or the suspension says so.

    A run that has ended is returned unchanged, and so is a run whose row knows of a later
    attempt than the suspension's (a stale suspension). The lost-wakeup rule: if the run is
    due at once (its ``wake_at`` has passed, or the signal it waits for is already in its
    inbox), the record returned says ``running``: wake it now. The row itself stays suspended
    (and due) until ``wake_run`` wins it, so that a wake its caller never gets to ask for is
    still owed, and found by the next scheduler's ``suspended_runs``. ``answers``: the
    suspension's answers as ``encode_answers`` made them (None keeps those stored).
    """
    s = suspension
    current = find_run(connection, s.run_key)
    if current is not None and (current.final or s.attempt < current.attempt):
        return current
    now = values.to_us(s.at)
    connection.execute(
        "INSERT INTO runs (run_key, task_id, scheduled_at, state, paused, wake_at, waiting, "
        "consumed, attempt, answers, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (run_key) DO UPDATE SET state = excluded.state, "
        "paused = max(runs.paused, excluded.paused), wake_at = excluded.wake_at, "
        "waiting = excluded.waiting, consumed = excluded.consumed, attempt = excluded.attempt, "
        "answers = coalesce(excluded.answers, runs.answers), updated_at = excluded.updated_at",
        [
            s.run_key,
            s.task_id,
            values.to_us(s.scheduled_at),
            "sleeping" if s.waiting is None else "waiting",
            int(s.paused),
            None if s.wake_at is None else values.to_us(s.wake_at),
            s.waiting,
            s.consumed,
            s.attempt,
            answers,
            now,
            now,
        ],
    )
    run = get_run(connection, s.run_key)
    if run.due(s.at, available(connection, run)):
        return dataclasses.replace(run, state="running")
    return run


def wake_run(connection: Connection, key: str, now: datetime) -> RunRecord | None:
    """Wake a suspended run that is due (not paused; see ``RunRecord.due``): state
    ``running``, one more wake, one more attempt; returns it. None if the run has no row, is
    not suspended, is paused or is not due: then nothing is written. Of several calls, the
    first wins; the others find it running."""
    run = find_run(connection, key)
    if run is None or not run.due(now, available(connection, run)):
        return None
    return _wake(connection, key, now)


def put_signal(
    connection: Connection,
    new: NewSignal,
    encoded: bytes,
    task_id: str,
    scheduled_at: datetime,
) -> tuple[InboxSignal, RunRecord]:
    """Add a signal to the run's inbox (creating the run's row if it has none). Conflict if the
    run has ended; InvalidValue naming ``inbox`` if it holds MAX_INBOX_SIGNALS already, or if
    its payloads would take more than MAX_INBOX_BYTES in all (nothing is written then).
    ``encoded``: the payload as ``encode_payload`` made it. Waking a run that waits for it is
    the caller's (``wake_run``)."""
    current = find_run(connection, new.run_key)
    if current is not None and current.final:
        raise final_conflict(current)
    counted = one(
        connection,
        "SELECT count(*), coalesce(sum(size_bytes), 0) FROM run_inbox WHERE run_key = ?",
        [new.run_key],
    )
    assert counted is not None
    held, size = int(counted[0]), int(counted[1])
    if held >= MAX_INBOX_SIGNALS:
        raise InvalidValue(
            "inbox",
            f"run {new.run_key} holds {held} signals, at most {MAX_INBOX_SIGNALS}: no more "
            "can be sent to it",
        )
    if size + len(encoded) > MAX_INBOX_BYTES:
        raise InvalidValue(
            "inbox",
            f"run {new.run_key} holds {size} bytes of signals: with this one's {len(encoded)} "
            f"it would be over the {MAX_INBOX_BYTES} bytes an inbox may hold",
        )
    ensure_run(connection, new.run_key, task_id, scheduled_at, new.sent_at)
    row = one(
        connection,
        "INSERT INTO run_inbox (run_key, name, payload, sender, sent_at, size_bytes) "
        f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {SIGNAL_COLUMNS}",
        [new.run_key, new.name, encoded, new.sender, values.to_us(new.sent_at), len(encoded)],
    )
    assert row is not None
    return signal_from_row(row), get_run(connection, new.run_key)


def control_run(
    connection: Connection,
    key: str,
    *,
    task_id: str,
    scheduled_at: datetime,
    action: str,
    reason: str | None,
    now: datetime,
) -> tuple[RunRecord, str]:
    """Cancel, pause or resume a run (creating its row if it has none); returns the row after
    and the run's state before. ``cancel`` ends it (``cancelled``, no wake left); ``pause``
    holds its wakes; ``resume`` releases them (waking is the caller's: ``wake_run``). Conflict
    if the run has ended, except that cancelling a cancelled run returns it unchanged."""
    ensure_run(connection, key, task_id, scheduled_at, now)
    current = get_run(connection, key)
    if current.final:
        if action == "cancel" and current.state == "cancelled":
            return current, current.state
        raise final_conflict(current)
    if action == "cancel":
        change = "state = 'cancelled', wake_at = NULL, waiting = NULL"
    elif action == "pause":
        change = "paused = 1"
    else:
        change = "paused = 0"
    connection.execute(
        f"UPDATE runs SET {change}, reason = ?, updated_at = ? WHERE run_key = ?",
        [reason, values.to_us(now), key],
    )
    return get_run(connection, key), current.state


def reopen_run(
    connection: Connection,
    key: str,
    *,
    task_id: str,
    scheduled_at: datetime,
    from_step: str | None,
    latest: ExecutionRecord | None,
    now: datetime,
) -> tuple[RunRecord, tuple[str, ...]]:
    """Make an ended run run again (``run retry``): its row (created if it has none) is
    ``running`` again, not paused, with no wake, its ``attempt`` the one to fire (its latest
    attempt's + 1), and the steps ``run_steps.delete_steps`` picks are deleted; returns the row
    and the deleted steps' names. Only an ended run may be: a row in state ``failed`` or
    ``cancelled`` (``succeeded`` only with ``from_step``), or, without a row, a fire whose
    latest attempt failed (succeeded: only with ``from_step``), whose latest attempt has
    ended (a cancelled run's may still be ending: its end would close the reopened run); else
    Conflict (NotFound: no row and no attempt). Nothing is written when it raises.
    ``latest``: the fire's latest attempt (``task_executions.latest_attempt``), read in the
    same write."""
    current = find_run(connection, key)
    if current is not None:
        state = current.state
    elif latest is None:
        raise NotFound(f"run {key!r} not found")
    elif latest.success is None:
        state = "running"
    else:
        state = "succeeded" if latest.success else "failed"
    if state not in ("failed", "cancelled") and not (
        state == "succeeded" and from_step is not None
    ):
        raise Conflict(f"run {key} is {state}")
    if latest is not None and latest.success is None:  # a cancelled run's attempt still ending
        raise Conflict(
            f"run {key} is {state}, but its attempt {latest.retry_count + 1} has not ended "
            "yet: retry it once it has"
        )
    deleted = run_steps.delete_steps(connection, key, from_step)
    attempt = 1 if latest is None else latest.retry_count + 2
    if current is not None:  # an attempt a wake or a reopen made but nobody recorded: that one
        attempt = max(attempt, current.attempt)
    ensure_run(connection, key, task_id, scheduled_at, now)
    connection.execute(
        "UPDATE runs SET state = 'running', paused = 0, wake_at = NULL, waiting = NULL, "
        "attempt = ?, reason = NULL, updated_at = ? WHERE run_key = ?",
        [attempt, values.to_us(now), key],
    )
    return get_run(connection, key), deleted


def finish_run(
    connection: Connection,
    key: str,
    state: str,
    reason: str | None,
    now: datetime,
    *,
    answers: bytes | None = None,
) -> RunRecord | None:
    """Set a final ``state`` on the run's row if it has not ended yet (a run that has keeps its
    state); None if the run has no row (nothing is written). ``answers`` (as
    ``encode_answers`` made them; None keeps those stored) are kept either way."""
    current = find_run(connection, key)
    if current is None:
        return None
    if answers is not None:
        connection.execute("UPDATE runs SET answers = ? WHERE run_key = ?", [answers, key])
    if current.final:
        return current if answers is None else get_run(connection, key)
    connection.execute(
        "UPDATE runs SET state = ?, reason = coalesce(?, reason), wake_at = NULL, "
        "waiting = NULL, updated_at = ? WHERE run_key = ?",
        [state, reason, values.to_us(now), key],
    )
    return get_run(connection, key)


def close_run(connection: Connection, key: str, now: datetime) -> None:
    """Mark the run ``key`` succeeded if it has a row that has not ended: its attempt finished
    with a success that is not a suspension (``task_executions.finish_execution``)."""
    connection.execute(
        "UPDATE runs SET state = 'succeeded', wake_at = NULL, waiting = NULL, updated_at = ? "
        "WHERE run_key = ? AND state NOT IN ('succeeded', 'failed', 'cancelled')",
        [values.to_us(now), key],
    )


# ------------------------------------------------------------------ start keys


def has_attempt(connection: Connection, key: str) -> bool:
    """Whether an execution of the run ``key`` is kept: one whose idempotency key is the run
    key, or the run key followed by ``#<retry>`` (found through the key's index)."""
    found = one(
        connection,
        "SELECT 1 FROM task_executions WHERE idempotency_key = ?1 UNION ALL "
        "SELECT 1 FROM task_executions "
        "WHERE idempotency_key > ?1 || '#' AND idempotency_key < ?1 || '$' LIMIT 1",
        [key],
    )
    return found is not None


def start_runs(
    connection: Connection, news: Sequence[NewExecution], now: datetime
) -> dict[int, str]:
    """Claim the start key of each fire of ``news`` that has one, in order: the fire's run gets
    a row (state ``running``) holding its key. A fire whose (task, start key) another run
    holds, stored or claimed earlier in ``news``, is not to be recorded: its index maps to
    that run's key in the answer. A key held by a run none of whose executions is kept any more
    is taken over by the new fire. A fire of a child run (``parent_key``) gets a row naming its
    parent, its ``spawn_key`` and ``on_parent_cancel``, start key or not."""
    claimed: dict[tuple[str, str], str] = {}
    duplicates: dict[int, str] = {}
    for index, new in enumerate(news):
        key = run_key(new.task_id, new.scheduled_at)
        if new.start_key is None:
            if new.parent_key is not None:
                _insert_started(connection, key, new, now)
            continue
        pair = (new.task_id, new.start_key)
        holder = claimed.get(pair)
        if holder is None:
            row = one(
                connection,
                "SELECT run_key FROM runs WHERE task_id = ? AND start_key = ?",
                [new.task_id, new.start_key],
            )
            if row is not None and row[0] != key and not has_attempt(connection, row[0]):
                connection.execute("UPDATE runs SET start_key = NULL WHERE run_key = ?", [row[0]])
            elif row is not None:
                holder = row[0]
        if holder is not None and holder != key:
            duplicates[index] = holder
            continue
        claimed[pair] = key
        _insert_started(connection, key, new, now)
    return duplicates


def _insert_started(connection: Connection, key: str, new: NewExecution, now: datetime) -> None:
    """The row of a run started with a start key or spawned (state ``running``); a row it has
    already keeps its start key and parent, if it has them."""
    connection.execute(
        "INSERT INTO runs (run_key, task_id, scheduled_at, state, start_key, parent_key, "
        "spawn_key, on_parent_cancel, created_at, updated_at) "
        "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?, ?) ON CONFLICT (run_key) DO UPDATE "
        "SET start_key = coalesce(runs.start_key, excluded.start_key), "
        "spawn_key = coalesce(runs.spawn_key, excluded.spawn_key), "
        "on_parent_cancel = CASE WHEN runs.parent_key IS NULL "
        "THEN excluded.on_parent_cancel ELSE runs.on_parent_cancel END, "
        "parent_key = coalesce(runs.parent_key, excluded.parent_key)",
        [
            key,
            new.task_id,
            values.to_us(new.scheduled_at),
            new.start_key,
            new.parent_key,
            new.spawn_key,
            new.on_parent_cancel,
            values.to_us(now),
            values.to_us(now),
        ],
    )
