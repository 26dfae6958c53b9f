"""``taskbus up`` (the whole system on this machine) and ``taskbus actor`` (one actor as its own
process): the commands that run taskbus rather than talk to it."""

from __future__ import annotations

import argparse
import asyncio

from config import Settings
from taskbus.cli import keys
from taskbus.cli.exits import EXIT_UNCLEAN
from taskbus.runner import run_one_actor, run_system


def up(args: argparse.Namespace) -> int:
    report = asyncio.run(run_system(args.settings))
    return 0 if report.clean else EXIT_UNCLEAN


def actor(args: argparse.Namespace) -> int:
    settings: Settings = args.settings
    report = asyncio.run(
        run_one_actor(
            args.spec, args.connect, keys.directory(args), settings, identity=args.identity
        )
    )
    return 0 if report.clean else EXIT_UNCLEAN
