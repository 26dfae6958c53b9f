"""What the commands that talk to a running taskbus share: a connected client for their work,
and ``--json`` output. Each connects with the client API (taskbus.client) as ``--identity``."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from taskbus.cli import format as fmt
from taskbus.client import TaskbusClient

Handler = Callable[[argparse.Namespace], int]  # a command: its arguments in, its exit code out
Work = Callable[[TaskbusClient], Awaitable[int]]  # what a command does with a connected client


def call(args: argparse.Namespace, work: Work) -> int:
    """``work``'s exit code, run with a client connected as the client options
    (``--connect``, ``--identity``, ``--timeout``) say."""

    async def run() -> int:
        async with TaskbusClient.connect(
            args.settings,
            identity=args.identity,
            endpoint=args.connect,
            timeout_s=args.timeout,
            responder_wait_s=args.timeout,
        ) as client:
            return await work(client)

    return asyncio.run(run())


def print_json(value: Any) -> None:
    print(fmt.as_json(value, indent=2))
