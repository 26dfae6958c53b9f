"""taskbus: a background-task scheduler built as ZeroMQ actors over an encrypted libSQL store.

What a host application imports::

    from taskbus import Taskbus, TaskbusClient, BaseTask, TaskContext, TaskResult, load_settings

``Taskbus`` runs every actor inside the host's asyncio loop; ``TaskbusClient`` manages tasks of a
running taskbus from any process or host; ``BaseTask``, ``TaskContext`` and ``TaskResult`` are
what a task is written with. The ``taskbus`` command (``python -m taskbus``) is
:mod:`taskbus.cli`.
"""

from bus import Refused, RemoteError
from config import Settings, load_settings
from config.errors import ConfigError, TaskbusError
from taskbus.batches import ApplyPlan, Created, ItemError, PlanEntry
from taskbus.client import Backfilled, Started, TaskbusClient, Unreachable
from taskbus.descriptions import NextFireTime, TaskAction, TaskDescription
from taskbus.embedding import Taskbus
from taskbus.instance import InUse
from tasks import (
    BaseTask,
    RunCancelled,
    Signal,
    SignalTimedOut,
    StepFailed,
    StepRetry,
    StepsChanged,
    StepTimedOut,
    Suspended,
    TaskCancelled,
    TaskContext,
    TaskDefinitionError,
    TaskOptions,
    TaskPermissionError,
    TaskResult,
    UnknownTaskClass,
    require_option,
    signal_handler,
)

__all__ = [
    "ApplyPlan",
    "Backfilled",
    "BaseTask",
    "ConfigError",
    "Created",
    "InUse",
    "ItemError",
    "NextFireTime",
    "PlanEntry",
    "Refused",
    "RemoteError",
    "RunCancelled",
    "Settings",
    "Signal",
    "SignalTimedOut",
    "Started",
    "StepFailed",
    "StepRetry",
    "StepTimedOut",
    "StepsChanged",
    "Suspended",
    "TaskAction",
    "TaskCancelled",
    "TaskContext",
    "TaskDefinitionError",
    "TaskDescription",
    "TaskOptions",
    "TaskPermissionError",
    "TaskResult",
    "Taskbus",
    "TaskbusClient",
    "TaskbusError",
    "UnknownTaskClass",
    "Unreachable",
    "load_settings",
    "require_option",
    "signal_handler",
]
