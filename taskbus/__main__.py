"""``python -m taskbus``: the ``taskbus`` command."""

import sys

from taskbus.cli import main

if __name__ == "__main__":
    sys.exit(main())
