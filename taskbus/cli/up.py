"""``taskbus up`` (the whole system on this machine) and ``taskbus actor`` (one actor as its own
process): the commands that run taskbus rather than talk to it."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from config import Settings
from config.errors import TaskbusError
from taskbus.cli import keys
from taskbus.cli.exits import EXIT_UNCLEAN
from taskbus.embedding import Taskbus
from taskbus.runner import Beside, run_one_actor, run_system


def up(args: argparse.Namespace) -> int:
    report = asyncio.run(run_system(args.settings, beside=_http(args)))
    return 0 if report.clean else EXIT_UNCLEAN


def _http(args: argparse.Namespace) -> Beside | None:
    """With ``--http``: the HTTP API beside the actors, its address checked before they start."""
    if args.http is None:
        return None
    if importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None:
        raise TaskbusError(
            "--http needs the HTTP packages: pip install 'taskbus[http]' (scripts/up does)"
        )
    from taskbus.http.serving import HttpAddress, require_local  # noqa: PLC0415 - the extra

    address = require_local(HttpAddress.parse(args.http), allow_remote=args.http_allow_remote)

    @asynccontextmanager
    async def beside(taskbus: Taskbus) -> AsyncIterator[object]:
        from taskbus.http.hosting import serving  # noqa: PLC0415 - the extra

        async with serving(taskbus, address, allow_remote=args.http_allow_remote) as server:
            print(
                f"taskbus: http API on {server.url} (a token: taskbus keys token <identity>)",
                file=sys.stderr,
                flush=True,
            )
            yield server

    return beside


def actor(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    report = asyncio.run(
        run_one_actor(
            args.spec, args.connect, keys.directory(args), settings, identity=args.identity
        )
    )
    return 0 if report.clean else EXIT_UNCLEAN
