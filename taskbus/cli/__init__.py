"""The ``taskbus`` command line.

User errors end in a one-line message and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from taskbus.cli import exits, parser

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = parser.build().parse_args(argv)
    return exits.guarded(lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    args.settings = parser.settings(args)
    logging.basicConfig(
        level=getattr(logging, args.settings.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    result: int = args.func(args)
    return result
