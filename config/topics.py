"""Every topic taskbus's actors speak, named once (docs/protocol.md lists their fields).

A topic is spelt here and nowhere else: the broker, the actors that serve or send a topic, the
typed clients, the built-in tasks and the default ACL import these names.
"""

from __future__ import annotations

from typing import Final

# ------------------------------------------------------------------ the broker's own

BUS = "bus."  # only the broker publishes and answers here
BUS_STATS: Final = "bus.stats"
BUS_PEERS: Final = "bus.peers"
BUS_PEER_UP: Final = "bus.peer.up"
BUS_PEER_DOWN: Final = "bus.peer.down"
BUS_ERROR: Final = "bus.error"

# ------------------------------------------------------------------ the scheduler's public API

SCHEDULER = "scheduler."  # every scheduler topic starts so
TASK = "scheduler.task."  # the task management family
TASK_CREATE: Final = "scheduler.task.create"
TASK_UPDATE: Final = "scheduler.task.update"
TASK_DELETE: Final = "scheduler.task.delete"
TASK_ENABLE: Final = "scheduler.task.enable"
TASK_DISABLE: Final = "scheduler.task.disable"
TASK_TRIGGER: Final = "scheduler.task.trigger"
TASK_RESET: Final = "scheduler.task.reset"
TASK_STATUS: Final = "scheduler.task.status"
TASK_GET: Final = "scheduler.task.get"
TASK_LIST: Final = "scheduler.task.list"
TASK_HISTORY: Final = "scheduler.task.history"
TASK_MISSED: Final = "scheduler.task.missed"
TASK_CREATE_MANY: Final = "scheduler.task.create_many"  # many definitions, one write per batch
TASK_APPLY: Final = "scheduler.task.apply"  # make the asker's tasks match a list (plan, prune)
TASK_PAUSE: Final = "scheduler.task.pause"  # stop firing, with a note; its instants recorded
TASK_UNPAUSE: Final = "scheduler.task.unpause"
TASK_BACKFILL: Final = "scheduler.task.backfill"  # fire every instant of a past range once
TASK_DESCRIBE: Final = "scheduler.task.describe"  # next fire times (DST marked), recent actions
RUN = "scheduler.run."  # the run family: one run (an execution) and its steps
RUN_GET: Final = "scheduler.run.get"
RUN_SIGNAL: Final = "scheduler.run.signal"
RUN_CANCEL: Final = "scheduler.run.cancel"
RUN_PAUSE: Final = "scheduler.run.pause"
RUN_RESUME: Final = "scheduler.run.resume"
RUN_LIST: Final = "scheduler.run.list"
RUN_TREE: Final = "scheduler.run.tree"  # a run and its child runs, as a tree
RUN_QUERY: Final = "scheduler.run.query"  # ask a run's query: live, or its stored answer
RUN_UPDATE: Final = "scheduler.run.update"  # a validated signal with a reply, to a live run
RUN_RETRY: Final = "scheduler.run.retry"  # run an ended run again, optionally from a step on
SCHEDULER_STATS: Final = "scheduler.stats"

# ------------------------------------------------------------------ agents' own work

AGENT_TASK = "agent.task."  # an identity's own tasks, in its namespace agent.<identity>.*
AGENT_TASK_SCHEDULE: Final = "agent.task.schedule"  # schedule_task(title, schedule, ...)

# ------------------------------------------------------------------ events

STATUS_EVENTS: Final = "scheduler.task.status"  # + ".<owner>": a task's life (docs/protocol.md)
DEAD_EVENTS: Final = "scheduler.task.dead"  # + ".<owner>": a fire given up
ERROR_EVENTS: Final = "scheduler.error"
HEALTH: Final = "scheduler.health"  # asked for the report, and published on every change
HEALTH_CHECK_EVENTS: Final = "scheduler.health.check"  # the health-check task's report
CATALOGUE_EVENTS: Final = "scheduler.catalogue."  # + "<category>": an executor's task classes
CATALOGUE_WANTED: Final = "scheduler.catalogue_wanted"  # a new leader asks executors to announce
ACTORS = "actors."  # the actor runtime's own topics
LIVENESS: Final = "actors.liveness"

# ------------------------------------------------------------------ work: scheduler <-> executors

DISPATCH_QUEUES: Final = "scheduler.task.dispatch."  # + "<category>"
RESULT_QUEUE: Final = "scheduler.task.result"
# + "<category>": the scheduler pushes a run's signals and controls to the executors (events)
RUN_DELIVER: Final = "scheduler.run.deliver."
# executors ask the scheduler (internal: only executors and admins): spawn a child run, answer a
# run's query
EXEC = "scheduler.exec."
EXEC_SPAWN: Final = "scheduler.exec.spawn"
EXEC_ANSWER: Final = "scheduler.exec.answer"

# ------------------------------------------------------------------ the store (internal)

STORE = "store."  # every store topic starts so
STORE_TASK_PUT: Final = "store.task.put"
STORE_TASK_PUT_MANY: Final = "store.task.put_many"  # many definitions, one fenced write
STORE_TASK_GET: Final = "store.task.get"
STORE_TASK_LIST: Final = "store.task.list"
STORE_TASK_DELETE: Final = "store.task.delete"
STORE_TASK_STATUS: Final = "store.task.status"
STORE_TASK_MARK_RUN: Final = "store.task.mark_run"
STORE_TASK_RESET: Final = "store.task.reset"
STORE_EXECUTIONS = "store.execution."  # the family executors may ask
STORE_EXECUTION_RECORD: Final = "store.execution.record"
STORE_EXECUTION_RECORD_MANY: Final = "store.execution.record_many"
STORE_EXECUTION_FINISH: Final = "store.execution.finish"
STORE_EXECUTION_FINISH_MANY: Final = "store.execution.finish_many"
STORE_EXECUTION_GET: Final = "store.execution.get"
STORE_EXECUTION_OUTCOMES: Final = "store.execution.outcomes"
STORE_EXECUTION_HISTORY: Final = "store.execution.history"
STORE_EXECUTION_UNSETTLED: Final = "store.execution.unsettled"
STORE_STATS: Final = "store.stats"
STORE_DEAD_LETTER_ADD: Final = "store.dead_letter.add"
STORE_DEAD_LETTERS: Final = "store.dead_letters"
STORE_MISSED_RECORD: Final = "store.missed.record"
STORE_MISSED_LIST: Final = "store.missed.list"
STORE_STEPS = "store.step."  # a run's steps: the family executors may ask
STORE_STEP_PUT: Final = "store.step.put"
STORE_STEP_LIST: Final = "store.step.list"
STORE_RUNS = "store.run."  # durable runs: suspensions, wakes, signals, control; executors may ask
STORE_RUN_SUSPEND: Final = "store.run.suspend"
STORE_RUN_WAKE: Final = "store.run.wake"
STORE_RUN_SIGNAL_PUT: Final = "store.run.signal.put"
STORE_RUN_SIGNAL_LIST: Final = "store.run.signal.list"
STORE_RUN_CONTROL: Final = "store.run.control"
STORE_RUN_GET: Final = "store.run.get"
STORE_RUN_LIST: Final = "store.run.list"
STORE_RUN_SUSPENDED: Final = "store.run.suspended"
STORE_RUN_FINISH: Final = "store.run.finish"
STORE_RUN_ATTEMPT: Final = "store.run.attempt"
STORE_RUN_CHILDREN: Final = "store.run.children"
STORE_RUN_STRANDED: Final = "store.run.stranded"
STORE_RUN_REOPEN: Final = "store.run.reopen"  # an ended run made to run again (run retry)
STORE_RETENTION_RUN: Final = "store.retention.run"
STORE_LEASE_ACQUIRE: Final = "store.lease.acquire"
STORE_LEASE_RENEW: Final = "store.lease.renew"
STORE_LEASE_RELEASE: Final = "store.lease.release"
STORE_MAINTENANCE = "store.maintenance."  # the family admins may ask
STORE_INTEGRITY_CHECK: Final = "store.maintenance.integrity_check"
STORE_REKEY: Final = "store.maintenance.rekey"
STORE_VACUUM: Final = "store.maintenance.vacuum"

# The store topics an admin may ask besides maintenance: reads, for inspection and recovery.
STORE_ADMIN_READS: Final = (
    STORE_TASK_GET,
    STORE_TASK_LIST,
    STORE_TASK_STATUS,
    STORE_EXECUTION_GET,
    STORE_EXECUTION_HISTORY,
    STORE_EXECUTION_UNSETTLED,
    STORE_STATS,
    STORE_DEAD_LETTERS,
    STORE_MISSED_LIST,
)
