"""What the database thread runs: an Operation (a function of the connection), its Outcome, and
the BatchOperation, which runs in one go with the operations of its class queued next to it.

``translated`` runs one operation and turns what the engine raises into the store's errors;
``run_batched`` runs a group's operations in order, batching what can be batched. The
transaction around them is ``Database.commit_group``'s.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Self, TypeVar, cast

from store._sql import Connection
from store.errors import Damaged, EngineFailure, StoreError, engine_damage, engine_failure

T = TypeVar("T")
Operation = Callable[[Connection], T]


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one operation of a group commit came to: a value, or the error it raised."""

    value: T | None = None
    error: BaseException | None = None


class BatchOperation(Generic[T]):
    """A write that can run in one go with the writes of its class queued right next to it.

    Called alone (``operation(connection)``) it behaves like any operation: it returns its value
    or raises, having written nothing. ``run_batch`` runs a run of consecutive operations of one
    class, in queue order, with the same result as running them one after the other; it returns
    one Outcome per operation. An operation found bad before any of its SQL ran (a value out of
    its domain, a stale lease) gets its error in its Outcome and has written nothing; anything
    that could leave part of an operation behind (an SQL error) must be raised instead, and the
    group is then run again one operation at a time (``Database.commit_group``).
    """

    __slots__ = ()

    def __call__(self, connection: Connection) -> T:
        raise NotImplementedError

    @classmethod
    def run_batch(cls, connection: Connection, operations: Sequence[Self]) -> list[Outcome[T]]:
        raise NotImplementedError


def run_batched(
    operations: Sequence[Operation[Any]], connection: Connection, path: Path
) -> list[Outcome[Any]]:
    """Every operation's Outcome, in order; raises what an operation or a batch raised."""
    outcomes: list[Outcome[Any]] = []
    start, end = 0, len(operations)
    while start < end:
        operation = operations[start]
        if not isinstance(operation, BatchOperation):
            outcomes.append(Outcome(value=translated(operation, connection, path)))
            start += 1
            continue
        kind = type(operation)
        stop = start + 1
        while stop < end and type(operations[stop]) is kind:
            stop += 1
        batch = cast(Sequence[BatchOperation[Any]], operations[start:stop])
        run = functools.partial(kind.run_batch, operations=batch)
        results = translated(run, connection, path)
        if len(results) != len(batch):
            raise StoreError(
                f"{kind.__name__}.run_batch: {len(results)} outcomes, {len(batch)} writes"
            )
        outcomes.extend(results)
        start = stop
    return outcomes


def translated(operation: Operation[T], connection: Connection, path: Path) -> T:
    """Run ``operation``; what the engine raises becomes a StoreError: an SQL error (libsql
    raises ValueError) a StoreError, Damaged if it says the file is damaged; a panic (or another
    BaseException but those in ``NOT_OURS``) an EngineFailure. Damaged and EngineFailure name
    no request: the worker, which knows what the job was for, names it.
    """
    try:
        return operation(connection)
    except StoreError:
        raise
    except ValueError as exc:
        damage = engine_damage(exc)
        if damage is not None:
            raise Damaged(path, "", damage) from exc
        raise StoreError(f"database error: {exc}") from exc
    except BaseException as exc:
        failure = engine_failure(exc)
        if failure is None:
            raise
        raise EngineFailure(f"store {path}: {failure}", failure) from exc
