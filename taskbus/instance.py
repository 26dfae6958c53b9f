"""One taskbus per data directory: an exclusive ``flock`` on ``<data dir>/taskbus.lock``.

``taskbus up`` and :class:`~taskbus.Taskbus` take it before they create keys, bind a socket or
open the store, and hold it until they stop; the file says who holds it (``{"pid": ...,
"endpoints": [...]}``), so a second start can name the running one. The kernel drops the lock
when its process dies, ``kill -9`` included: a stale file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Sequence
from pathlib import Path

from config.errors import TaskbusError

LOCK_NAME = "taskbus.lock"


class InUse(TaskbusError):
    """Another process runs taskbus on this data directory, or an endpoint is taken."""

    code = "in_use"


class InstanceLock:
    """The data directory's lock; :meth:`acquire` raises :class:`InUse` if another holds it."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, endpoints: Sequence[str]) -> None:
        if self._fd is not None:
            raise TaskbusError(f"{self.path} is already held by this process")
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise InUse(
                f"taskbus already runs on {self.data_dir}: {_describe(holder)}; stop it first"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.record(endpoints)

    def record(self, endpoints: Sequence[str]) -> None:
        """Say who holds the lock (the endpoints as bound, once they are)."""
        if self._fd is None:
            return
        text = json.dumps({"pid": os.getpid(), "endpoints": list(endpoints)}).encode()
        os.pwrite(self._fd, text, 0)  # written before truncating: a reader never sees it empty
        os.ftruncate(self._fd, len(text))

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing drops the flock


def _read(fd: int) -> dict[str, object]:
    try:
        found = json.loads(os.pread(fd, 65536, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _describe(holder: dict[str, object]) -> str:
    pid = holder.get("pid", "unknown")
    endpoints = holder.get("endpoints")
    where = ", ".join(str(e) for e in endpoints) if isinstance(endpoints, list) else ""
    return f"pid {pid}, listening on {where or 'inproc only'}"
