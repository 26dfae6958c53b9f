"""``taskbus store check`` and ``taskbus store rekey``: maintenance of the encrypted store of a
running taskbus, done by its store actor."""

from __future__ import annotations

import argparse

from taskbus.cli._remote import call
from taskbus.cli.exits import EXIT_INTEGRITY
from taskbus.client import TaskbusClient


def check(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        problems = await client.store.integrity_check()
        if not problems:
            print("store integrity: ok")
            return 0
        for problem in problems:
            print(f"store integrity: {problem}")
        return EXIT_INTEGRITY

    return call(args, work)


def rekey(args: argparse.Namespace) -> int:
    async def work(client: TaskbusClient) -> int:
        report = await client.store.rekey()
        print(f"store rekeyed; backup with the old key: {report.backup}")
        if report.backup_key_file:
            print(f"the old master key, which opens the backup: {report.backup_key_file}")
        return 0

    return call(args, work)
