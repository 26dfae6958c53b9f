"""The CLI's exit codes, and the one place where an error becomes one.

Every code is in docs/operations.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from config.errors import TaskbusError
from taskbus.client import Unreachable
from taskbus.instance import InUse

# Besides 0 (success) and 2 (bad usage, which argparse reports itself):
EXIT_ERROR = 1  # one line on stderr
EXIT_UNCLEAN = 3  # a shutdown had to cancel work
EXIT_INTEGRITY = 4
EXIT_UNREACHABLE = 5
EXIT_DEGRADED = 6
EXIT_CRITICAL = 7
EXIT_IN_USE = 8  # `up`: the data directory or an endpoint is another process's
EXIT_INTERRUPTED = 130


def guarded(command: Callable[[], int]) -> int:
    """``command``'s exit code, or the code of the error it raised, that error's message then
    being one ``taskbus: ...`` line on stderr (no traceback)."""
    try:
        result = command()
        sys.stdout.flush()  # a reader gone early (``taskbus health | head -1``) shows here
    except BrokenPipeError:
        # Not an error: the reader has what it wanted. Python flushes stdout again at exit,
        # so stdout becomes devnull to keep that quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Unreachable as exc:
        print(f"taskbus: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except InUse as exc:
        print(f"taskbus: {exc}", file=sys.stderr)
        return EXIT_IN_USE
    except TaskbusError as exc:
        print(f"taskbus: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    return result
