"""The task API: what a task is (BaseTask, its options, its result), what it is given
(TaskContext, TaskServices), and the registry that finds and checks task classes.

Imports only ``config`` and ``scheduler``; the executors in ``actors`` run the tasks.
"""

from tasks.base import BaseTask
from tasks.children import ChildRun, Spawner
from tasks.context import ProgressCallback, TaskContext
from tasks.effective import effective_options, effective_schedule, effective_timeout_s
from tasks.errors import (
    ChildFailed,
    OptionsError,
    RunCancelled,
    SignalTimedOut,
    StepFailed,
    StepsChanged,
    StepTimedOut,
    Suspended,
    TaskCancelled,
    TaskDefinitionError,
    TaskPermissionError,
    TaskUsageError,
    UnknownTaskClass,
)
from tasks.options import TaskOptions, require_option
from tasks.permissions import TaskPermissions, category_of
from tasks.queries import answer_queries, answer_query, queries_of, query
from tasks.registry import BUILTIN_MODULES, TaskRegistry
from tasks.result import TaskResult
from tasks.services import TaskServices
from tasks.signals import (
    MemoryInbox,
    RunSignals,
    Signal,
    SignalInbox,
    handlers_of,
    signal_handler,
)
from tasks.steps import MemoryJournal, StepJournal, StepRetry, StoredStep
from tasks.updates import UpdateMethod, update, updates_of, validate_update

__all__ = [
    "BUILTIN_MODULES",
    "BaseTask",
    "ChildFailed",
    "ChildRun",
    "MemoryInbox",
    "MemoryJournal",
    "OptionsError",
    "ProgressCallback",
    "RunCancelled",
    "RunSignals",
    "Signal",
    "SignalInbox",
    "SignalTimedOut",
    "Spawner",
    "StepFailed",
    "StepJournal",
    "StepRetry",
    "StepTimedOut",
    "StepsChanged",
    "StoredStep",
    "Suspended",
    "TaskCancelled",
    "TaskContext",
    "TaskDefinitionError",
    "TaskOptions",
    "TaskPermissionError",
    "TaskPermissions",
    "TaskRegistry",
    "TaskResult",
    "TaskServices",
    "TaskUsageError",
    "UnknownTaskClass",
    "UpdateMethod",
    "answer_queries",
    "answer_query",
    "category_of",
    "effective_options",
    "effective_schedule",
    "effective_timeout_s",
    "handlers_of",
    "queries_of",
    "query",
    "require_option",
    "signal_handler",
    "update",
    "updates_of",
    "validate_update",
]
