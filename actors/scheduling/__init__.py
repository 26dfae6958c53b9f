"""The scheduler on the bus: task requests, the lease, firing, dispatch, results and retries."""

from actors.scheduling.actor import SchedulerActor
from actors.scheduling.protocol import DISPATCH_PREFIX, RESULT_QUEUE, Dispatch, RunResult

__all__ = ["DISPATCH_PREFIX", "RESULT_QUEUE", "Dispatch", "RunResult", "SchedulerActor"]
