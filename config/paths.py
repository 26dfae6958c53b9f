"""Where taskbus keeps its data: ``TASKBUS_HOME``, else the per-user data directory."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_ENDPOINT = "tcp://127.0.0.1:7420"


def default_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("TASKBUS_HOME"):
        return Path(env["TASKBUS_HOME"]).expanduser()
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "taskbus"
