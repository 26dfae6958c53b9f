"""Where taskbus keeps its data: ``TASKBUS_HOME``, else the per-user data directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7420"


def default_endpoint(environ: Mapping[str, str] | None = None) -> str:
    """The broker's local tcp endpoint: ``TASKBUS_ENDPOINT``, else ``DEFAULT_ENDPOINT``."""
    env = os.environ if environ is None else environ
    return env.get("TASKBUS_ENDPOINT") or DEFAULT_ENDPOINT


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("TASKBUS_HOME"):
        return Path(env["TASKBUS_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "taskbus"


@dataclass(frozen=True, slots=True)
class DataPaths:
    home: Path

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    @property
    def ipc_endpoint(self) -> str:
        return f"ipc://{self.home / 'run' / 'broker.sock'}"

    def ensure(self) -> None:
        """Create the data directory (private to this user) if it does not exist."""
        (self.home / "run").mkdir(parents=True, exist_ok=True, mode=0o700)
        self.home.chmod(0o700)
