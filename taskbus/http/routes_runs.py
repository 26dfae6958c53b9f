"""``/runs``: list the durable runs, get one execution with its steps, and signal, query,
cancel, pause, resume or retry a run; each the ``TaskbusClient`` call of the same name, as the
token's identity. ``{run}`` is a run key (``<task id>@<µs>``) or an execution id of one of its
attempts."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query

from store.records import RUN_STATES
from taskbus.http.auth import Caller, authenticated
from taskbus.http.errors import Responses
from taskbus.http.models import (
    CancelBody,
    QueryAnswer,
    Retried,
    RetryBody,
    RunAfter,
    RunDetail,
    RunList,
    SignalBody,
    Signalled,
)

Who = Annotated[Caller, Depends(authenticated)]
RunRef = Annotated[str, Path(description="a run key (<task id>@<µs>) or an execution id")]
NOT_FOUND: Responses = {404: {"description": "no such run (`not_found`)"}}
ENDED: Responses = {**NOT_FOUND, 409: {"description": "the run has ended, or has not (`conflict`)"}}


def add_run_routes(router: APIRouter) -> None:
    @router.get("/runs", response_model=RunList, summary="The durable runs, by run key")
    async def list_runs(
        caller: Who,
        task_id: Annotated[str | None, Query(description="one task's runs only")] = None,
        state: Annotated[str | None, Query(description=f"one of {', '.join(RUN_STATES)}")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> dict[str, Any]:
        return {"runs": await caller.client.runs(task_id, state, limit=limit)}

    @router.get(
        "/runs/{execution_id}",
        response_model=RunDetail,
        summary="One execution with its logs, and its fire's steps",
        responses=NOT_FOUND,
    )
    async def get_run(caller: Who, execution_id: str) -> dict[str, Any]:
        return await caller.client.run(execution_id)

    @router.post(
        "/runs/{run}/signal",
        response_model=Signalled,
        summary="Put a signal in the run's inbox (wakes it if it waits for it)",
        responses=ENDED,
    )
    async def signal_run(caller: Who, run: RunRef, body: SignalBody) -> dict[str, Any]:
        return await caller.client.signal(run, body.name, body.payload)

    @router.get(
        "/runs/{run}/query/{name}",
        response_model=QueryAnswer,
        summary="What the run's @query(name) answers (live, or as stored)",
        responses=NOT_FOUND,
    )
    async def query_run(caller: Who, run: RunRef, name: str) -> dict[str, Any]:
        return await caller.client.query(run, name)

    @router.post(
        "/runs/{run}/cancel", response_model=RunAfter, summary="Cancel for good", responses=ENDED
    )
    async def cancel_run(
        caller: Who, run: RunRef, body: Annotated[CancelBody | None, Body()] = None
    ) -> dict[str, Any]:
        reason = "" if body is None else body.reason
        return {"run": await caller.client.cancel_run(run, reason)}

    @router.post(
        "/runs/{run}/pause", response_model=RunAfter, summary="Hold the run", responses=ENDED
    )
    async def pause_run(caller: Who, run: RunRef) -> dict[str, Any]:
        return {"run": await caller.client.pause_run(run)}

    @router.post(
        "/runs/{run}/resume", response_model=RunAfter, summary="Let it go on", responses=ENDED
    )
    async def resume_run(caller: Who, run: RunRef) -> dict[str, Any]:
        return {"run": await caller.client.resume_run(run)}

    @router.post(
        "/runs/{run}/retry",
        response_model=Retried,
        summary="Run an ended run again, as a new attempt",
        responses=ENDED,
    )
    async def retry_run(
        caller: Who, run: RunRef, body: Annotated[RetryBody | None, Body()] = None
    ) -> dict[str, Any]:
        step = None if body is None else body.from_step
        return await caller.client.retry_run(run, from_step=step)
