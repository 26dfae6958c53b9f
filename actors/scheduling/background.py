"""Work the leading scheduler starts beside its handlers (a retry's fire, a jittered dispatch),
whose failure kills the actor: the first one to fail resolves ``failed`` with its exception, which
the actor's ``run`` awaits (a lost lease, say, so that its supervisor restarts it as a standby).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Background:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failed: asyncio.Future[None] | None = None

    @property
    def failed(self) -> asyncio.Future[None]:
        """Resolves with the exception of the first spawned work that failed (never otherwise)."""
        if self._failed is None:
            self._failed = asyncio.get_running_loop().create_future()
        return self._failed

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, finished: asyncio.Task[Any]) -> None:
        self._tasks.discard(finished)
        if finished.cancelled():
            return
        error = finished.exception()
        if error is not None and not self.failed.done():
            self.failed.set_exception(error)

    async def stop(self) -> None:
        """Cancel what still runs and wait for it."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
