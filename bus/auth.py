"""ZAP policy: admit only allow-listed CURVE keys, and name each peer after its key file."""

from __future__ import annotations

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

    The allow-list directory is re-read when its modification time changes, so
    ``taskbus keys allow`` takes effect for the next connection without a restart.
    """

    def __init__(self, context: zmq.Context[Any], allowed_dir: Path) -> None:
        super().__init__(context, log=log)
        self._allow_list_dir = allowed_dir
        self._allowed_keys: dict[bytes, str] = {}
        self._mtime_ns = -1
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
        try:
            mtime_ns = self._allow_list_dir.stat().st_mtime_ns
        except FileNotFoundError:
            mtime_ns = 0
        if mtime_ns != self._mtime_ns:
            self._allowed_keys = load_allow_list(self._allow_list_dir)
            self._mtime_ns = mtime_ns

    def start(self) -> None:
        self._reload_if_changed()
        super().start()

    def __repr__(self) -> str:
        return f"AllowListAuthenticator({self._allow_list_dir})"
