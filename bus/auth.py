"""ZAP policy: admit only allow-listed CURVE keys, and name each peer after its key file."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import zmq
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

from bus.keys import load_allow_list

log = logging.getLogger("taskbus.bus.auth")

ZAP_DOMAIN = "taskbus"


class AllowListAuthenticator(AsyncioAuthenticator):
    """Without a running ZAP handler libzmq admits any CURVE key; this is that handler.

    The allow-list directory is re-read when a key file in it is added, removed, replaced or
    rewritten, so ``taskbus keys allow`` takes effect for the next connection without a restart.
    """

    def __init__(self, context: zmq.Context[Any], allowed_dir: Path) -> None:
        super().__init__(context, log=log)
        self._allow_list_dir = allowed_dir
        self._allowed_keys: dict[bytes, str] = {}
        self._fingerprint: frozenset[tuple[str, int, int, int]] | None = None
        self.rejected = 0
        self.configure_curve_callback(ZAP_DOMAIN, self)

    def callback(self, domain: str, z85_key: bytes) -> bool:
        """Called by the ZAP handler for every CURVE handshake."""
        self._reload_if_changed()
        admitted = z85_key in self._allowed_keys
        if not admitted:
            self.rejected += 1
            log.warning(
                "bus.auth rejected CURVE key %s: not in %s", z85_key.decode(), self._allow_list_dir
            )
        return admitted

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._allowed_keys[z85.encode(client_public_key)]

    def _reload_if_changed(self) -> None:
        fingerprint = _fingerprint(self._allow_list_dir)
        if fingerprint is None or fingerprint != self._fingerprint:
            self._allowed_keys = load_allow_list(self._allow_list_dir)
            self._fingerprint = fingerprint

    def start(self) -> None:
        self._reload_if_changed()
        super().start()

    async def aclose(self) -> None:
        """Stop once pyzmq's cancelled ZAP poll has let go of the socket's file descriptor.

        ``stop()`` alone closes the ZAP socket while that poll still has a callback pending which
        unregisters the descriptor *by number*: a broker started next in the same loop reuses the
        number for its own ZAP socket, loses the registration, and never admits anyone.
        """
        task = getattr(self, "_AsyncioAuthenticator__task", None)
        if isinstance(task, asyncio.Future) and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.stop()

    def __repr__(self) -> str:
        return f"AllowListAuthenticator({self._allow_list_dir})"


def _fingerprint(directory: Path) -> frozenset[tuple[str, int, int, int]] | None:
    """What changes when a key file changes; the directory's mtime misses in-place rewrites.

    None when the directory cannot be listed, so that the next handshake reads it again.
    """
    try:
        return frozenset(
            (path.name, info.st_ino, info.st_size, info.st_mtime_ns)
            for path in directory.glob("*.key")
            for info in (path.stat(),)
        )
    except OSError:
        return None
