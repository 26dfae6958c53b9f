"""The JSON the REST API takes and gives, as Pydantic models (they make the OpenAPI document).

Request bodies refuse unknown fields (422 ``invalid``). Responses carry what the bus answered,
in the shapes of docs/protocol.md §13; the models name the fields every answer has and let the
others through, so a field the scheduler adds later is not lost. Times are ISO 8601 text.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Definition(_Body):
    """The fields a task definition may set (docs/scheduling.md)."""

    timezone: str | None = Field(None, description="IANA zone, e.g. Europe/Berlin")
    config: dict[str, Any] | None = Field(None, description="the task's options")
    enabled: bool | None = None
    misfire_policy: dict[str, Any] | None = None
    retry_policy: dict[str, Any] | None = None
    run_policy: dict[str, Any] | None = None

    def fields(self) -> dict[str, Any]:
        """The fields that were given (a null is not sent: the scheduler's default holds)."""
        return self.model_dump(exclude_none=True)


class TaskCreate(_Definition):
    """A new ``user.*`` task, owned by the token's identity."""

    task_id: str = Field(description="<category>.<name>, e.g. user.reflect")
    task_class: str = Field(description="module:Class, e.g. tasks.reminders:Reminder")
    schedule: str = Field(description="cron, 'every 5m', 'at:<ISO instant>'...")


class TaskUpdate(_Definition):
    """Changes to a task: any create field but the id; ``expected_version`` refuses the change
    (409 ``conflict``) if the task was changed since."""

    task_class: str | None = None
    schedule: str | None = None
    expected_version: int | None = None


class TriggerBody(_Body):
    key: str | None = Field(
        None, description="a start key: a second trigger with it starts nothing (runs.md)"
    )


class PauseBody(_Body):
    note: str | None = Field(None, description="why (at most 500 characters)")


class SignalBody(_Body):
    name: str = Field(description="the signal's name, e.g. approve")
    payload: Any = Field(None, description="what the signal carries (any JSON)")


class CancelBody(_Body):
    reason: str = ""


class RetryBody(_Body):
    from_step: str | None = Field(
        None, description="run this step and those stored after it again (default: failed ones)"
    )


class SessionBody(_Body):
    token: str


class Task(_Answer):
    """A stored task (docs/protocol.md §13), with ``warnings`` when its class could not be
    checked, and ``next_fire`` and ``status`` in a list asked ``with_status``."""

    task_id: str
    task_class: str
    schedule: str
    timezone: str
    enabled: bool
    owner: str
    version: int
    config: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None
    last_run: str | None = None
    next_run: str | None = None
    paused: bool = False
    note: str | None = None


class TaskList(BaseModel):
    tasks: list[Task]


class Triggered(BaseModel):
    """The run a trigger started (or, ``duplicate``, the one its key had started)."""

    task_id: str
    execution_id: str
    run: str
    duplicate: bool


class Execution(_Answer):
    """One run of a task: ``execution_id``, ``scheduled_at``, ``started_at``, ``completed_at``,
    ``success``, ``duration_seconds``, ``trigger``, ``retry_count``, ``result``,
    ``error_message``, ``logs``."""

    execution_id: str
    task_id: str


class History(BaseModel):
    executions: list[Execution]


class Missed(BaseModel):
    missed: list[dict[str, Any]]


class Step(_Answer):
    name: str
    status: str


class RunDetail(BaseModel):
    """One execution with its log lines, and its fire's steps in the order they were stored."""

    run: Execution
    steps: list[Step]


class Run(_Answer):
    """A durable run's record (docs/runs.md): ``run_key``, ``task_id``, ``state``, ``paused``..."""

    run_key: str
    task_id: str
    state: str


class RunList(BaseModel):
    runs: list[Run]


class Signalled(BaseModel):
    run: Run
    seq: int


class RunAfter(BaseModel):
    run: Run


class Retried(BaseModel):
    run: Run | None
    execution_id: str | None
    deleted_steps: list[str]


class QueryAnswer(BaseModel):
    answer: Any
    live: bool


class Health(_Answer):
    status: str = Field(description="healthy, degraded or critical")
    actors: dict[str, Any]


class Stats(_Answer):
    """``scheduler.stats`` (admins only): the leader, task counts, counters and run statistics."""


class Session(BaseModel):
    identity: str
