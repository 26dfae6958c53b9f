"""Typed, validated settings of the encrypted store (the libSQL database of the store actor)."""

from __future__ import annotations

from dataclasses import dataclass

from config._checks import require_choice
from config.bus import require_float, require_int

SYNCHRONOUS_MODES = ("full", "normal")


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreSettings:
    """Durability, batching, size limits and retention of the store (docs/store.md).

    ``synchronous`` is SQLite's setting in WAL mode: ``full`` fsyncs the log on every commit
    (an acknowledged write survives a power cut), ``normal`` only at checkpoints (it survives a
    process crash, but the last commits may be lost on a power cut). ``max_batch`` bounds how many
    writes one group commit holds. ``max_value_bytes`` bounds a task's encoded config and an
    execution's encoded result; ``max_error_chars`` truncates error messages. Retention keeps
    execution history for ``retention_days`` and at most ``max_executions`` rows.
    """

    synchronous: str = "full"
    max_batch: int = 512
    max_value_bytes: int = 64 * 1024
    max_error_chars: int = 4_000
    retention_days: float = 30.0
    max_executions: int = 1_000_000
    retention_chunk_rows: int = 1_000

    def __post_init__(self) -> None:
        require_choice("store.synchronous", self.synchronous, SYNCHRONOUS_MODES)
        require_int("store.max_batch", self.max_batch, 1, 100_000)
        require_int("store.max_value_bytes", self.max_value_bytes, 64, 16 * 1024 * 1024)
        require_int("store.max_error_chars", self.max_error_chars, 16, 1_000_000)
        require_float("store.retention_days", self.retention_days, 0.0, 36_500.0)
        require_int("store.max_executions", self.max_executions, 1, 10**12)
        require_int("store.retention_chunk_rows", self.retention_chunk_rows, 1, 1_000_000)
