"""A task whose every run kills the process running it (not collected): the poison the
executors must quarantine instead of running forever."""

from __future__ import annotations

import os
import signal
from typing import Any

from tasks import BaseTask, TaskContext, TaskResult


class KillsItsExecutor(BaseTask):
    category = "user"

    async def execute(self, ctx: TaskContext[Any]) -> TaskResult:
        os.kill(os.getpid(), signal.SIGKILL)
        return TaskResult.ok()  # never reached
