"""The tasks branch of taskbus's exception hierarchy (STYLE item 8)."""

from __future__ import annotations

from datetime import datetime

from config.errors import TaskbusError


class TaskDefinitionError(TaskbusError, ValueError):
    """A task class breaks the task interface; the message names the class and what is wrong."""


class OptionsError(TaskDefinitionError):
    """A task's options do not fit its ``Options``; ``key`` is ``options.<name>``.

    Values are not shown: options may hold secrets.
    """

    def __init__(self, key: str, problem: str, *, task: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.task = task
        prefix = f"task {task}: " if task else ""
        super().__init__(f"{prefix}{key}: {problem}")


class UnknownTaskClass(TaskDefinitionError, LookupError):
    """No registered class has this key (``module:qualname``) or task id."""


class TaskPermissionError(TaskbusError, PermissionError):
    """A task may not be created, deleted or run this way (its category forbids it)."""


class TaskUsageError(TaskbusError, ValueError):
    """A task used its API wrongly: progress out of 0..1, result data that is not plain..."""


class TaskCancelled(TaskbusError):
    """Raised by ``TaskContext.check_cancelled()`` once the run is cancelled (timeout, shutdown)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"task cancelled: {reason}")


class StepFailed(TaskbusError):
    """A step of the run failed for good: its own retries were spent, and its error is stored,
    so every later run of the same fire raises it again without running the step."""

    def __init__(self, step: str, error: str) -> None:
        self.step = step
        self.error = error
        super().__init__(f"step {step!r} failed: {error}")


class StepsChanged(TaskbusError):
    """The run's code no longer matches its recorded steps: steps recorded by an earlier
    attempt of the run were never asked for by this one (``steps``, sorted)."""

    def __init__(self, steps: tuple[str, ...]) -> None:
        self.steps = steps
        super().__init__(
            "the run's recorded steps do not match its code: recorded but never asked for: "
            + ", ".join(repr(step) for step in steps)
        )


class StepTimedOut(TaskbusError):
    """One try of a step overran the step's ``timeout_s`` (not a TimeoutError, which would read
    as the run's own timeout)."""

    def __init__(self, step: str, timeout_s: float) -> None:
        self.step = step
        self.timeout_s = timeout_s
        super().__init__(f"step {step!r} timed out after {timeout_s:g}s")


class RunCancelled(TaskCancelled):
    """The run itself was cancelled (``scheduler.run.cancel``): a running step is no longer
    awaited, and sleeps, signal waits and ``check_cancelled`` raise this. It is final: the run
    is not retried nor woken again."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        TaskbusError.__init__(self, f"run cancelled: {reason}")


class SignalTimedOut(TaskbusError):
    """``ctx.wait_signal(name, timeout=...)``: no signal ``name`` came before the wait's
    ``deadline`` (kept with the run, so a later attempt of it raises this again). Not a
    TimeoutError, which would read as the run's own timeout."""

    def __init__(self, name: str, deadline: datetime | None = None) -> None:
        self.name = name
        self.deadline = deadline
        by = f" by {deadline.isoformat()}" if deadline is not None else ""
        super().__init__(f"signal {name!r} did not come{by}")


class ChildFailed(TaskbusError):
    """``await handle.result()`` (or ``ctx.gather``) of a child run that did not succeed:
    ``state`` is ``failed`` or ``cancelled``, ``error`` what the child's run said (None if
    nothing). An Exception: the parent may catch it and go on."""

    def __init__(self, key: str, state: str, error: str | None = None) -> None:
        self.key = key
        self.state = state
        self.error = error
        why = f": {error}" if error else ""
        super().__init__(f"child run {key!r} {state}{why}")


class Suspended(BaseException):
    """Raised by ``ctx.sleep``/``ctx.sleep_until``/``ctx.wait_signal`` (and the pause boundary)
    to end the attempt while the run goes on later: the executor stores the run as sleeping
    (until ``wake_at``) or waiting (for a signal ``waiting``, ``consumed`` of those already
    taken by the run, until ``wake_at`` if the wait has a timeout), and a new attempt replays
    it once it is woken. ``paused``: the run was paused (``wake_at`` None: woken only once
    resumed).

    A BaseException, like asyncio.CancelledError, so that task code's ``except Exception``
    does not catch it; do not catch it in a task (or re-raise it).
    """

    def __init__(
        self,
        *,
        wake_at: datetime | None = None,
        waiting: str | None = None,
        consumed: int = 0,
        paused: bool = False,
    ) -> None:
        self.wake_at = wake_at
        self.waiting = waiting
        self.consumed = consumed
        self.paused = paused
        parts = ["paused"] if paused else []
        if waiting is not None:
            parts.append(f"waiting for signal {waiting!r}")
        if wake_at is not None:
            parts.append(f"until {wake_at.isoformat()}")
        super().__init__("run suspended: " + (", ".join(parts) or "until woken"))
