"""The Celery app ``benchmarks/peers.py`` measures: one no-op task, Redis broker and results.

The benchmark sends the tasks from its own process, then starts the worker as
``python -m celery -A benchmarks.celery_noop worker --pool=solo`` from the repository root. Both
read the Redis URL from ``PEERS_REDIS_URL`` (database 0 for the broker, 1 for the results). The
worker notes when it is ready (``worker_ready``) as one ``time.time()`` in the file
``PEERS_CELERY_READY`` names: the benchmark times the drain from there, so the worker's imports
are not in the timed span. Everything else is Celery's
default: results expire after a day, acks happen before the task runs (``acks_late`` off), the
worker prefetches 4 messages.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.signals import worker_ready

_URL = os.environ.get("PEERS_REDIS_URL", "redis://127.0.0.1:6379")

app = Celery("celery_noop", broker=f"{_URL}/0", backend=f"{_URL}/1")
app.conf.broker_connection_retry_on_startup = True  # silences a deprecation warning in 5.3+


@app.task(name="noop")
def noop() -> None:
    return None


@worker_ready.connect
def _ready(**_: Any) -> None:
    if os.environ.get("PEERS_CELERY_READY"):
        with open(os.environ["PEERS_CELERY_READY"], "w") as stamp:
            stamp.write(repr(time.time()))
