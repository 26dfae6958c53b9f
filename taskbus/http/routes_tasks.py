"""``/tasks``: list, get, create, update, delete, enable, disable, trigger, pause and unpause a
task, and read its history and missed fires; each the ``TaskbusClient`` call of the same name,
as the token's identity."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Response

from taskbus.http.auth import Caller, authenticated
from taskbus.http.errors import Responses
from taskbus.http.models import (
    History,
    Missed,
    PauseBody,
    Task,
    TaskCreate,
    TaskList,
    TaskUpdate,
    TriggerBody,
    Triggered,
)

Who = Annotated[Caller, Depends(authenticated)]
NOT_FOUND: Responses = {404: {"description": "no such task (`not_found`)"}}


def add_task_routes(router: APIRouter) -> None:
    @router.get("/tasks", response_model=TaskList, summary="Every task the identity may see")
    async def list_tasks(
        caller: Who,
        with_status: Annotated[
            bool, Query(description="each task also has next_fire and status")
        ] = False,
    ) -> dict[str, Any]:
        return {"tasks": await caller.client.tasks(with_status=with_status)}

    @router.post(
        "/tasks",
        response_model=Task,
        status_code=201,
        summary="Create a user.* task",
        responses={409: {"description": "the id is taken (`exists`, `conflict`)"}},
    )
    async def create_task(caller: Who, body: TaskCreate) -> dict[str, Any]:
        fields = body.fields()
        task_id, task_class, schedule = (
            fields.pop(k) for k in ("task_id", "task_class", "schedule")
        )
        return await caller.client.create(task_id, task_class, schedule, **fields)

    @router.get("/tasks/{task_id}", response_model=Task, summary="One task", responses=NOT_FOUND)
    async def get_task(caller: Who, task_id: str) -> dict[str, Any]:
        return await caller.client.get(task_id)

    @router.patch(
        "/tasks/{task_id}",
        response_model=Task,
        summary="Change a task's definition",
        responses={**NOT_FOUND, 409: {"description": "a stale expected_version (`conflict`)"}},
    )
    async def update_task(caller: Who, task_id: str, body: TaskUpdate) -> dict[str, Any]:
        return await caller.client.update(task_id, **body.fields())

    @router.delete(
        "/tasks/{task_id}", status_code=204, summary="Delete a user.* task", responses=NOT_FOUND
    )
    async def delete_task(caller: Who, task_id: str) -> Response:
        await caller.client.delete(task_id)
        return Response(status_code=204)

    @router.post(
        "/tasks/{task_id}/enable",
        response_model=Task,
        summary="Schedule again",
        responses=NOT_FOUND,
    )
    async def enable_task(caller: Who, task_id: str) -> dict[str, Any]:
        return await caller.client.enable(task_id)

    @router.post(
        "/tasks/{task_id}/disable",
        response_model=Task,
        summary="Stop scheduling (a trigger still runs it)",
        responses=NOT_FOUND,
    )
    async def disable_task(caller: Who, task_id: str) -> dict[str, Any]:
        return await caller.client.disable(task_id)

    @router.post(
        "/tasks/{task_id}/trigger",
        response_model=Triggered,
        status_code=202,
        summary="Run now, outside the schedule",
        responses=NOT_FOUND,
    )
    async def trigger_task(
        caller: Who, task_id: str, body: Annotated[TriggerBody | None, Body()] = None
    ) -> dict[str, Any]:
        started = await caller.client.start(task_id, key=None if body is None else body.key)
        return asdict(started)

    @router.post(
        "/tasks/{task_id}/pause",
        response_model=Task,
        summary="Stop firing until unpaused",
        responses=NOT_FOUND,
    )
    async def pause_task(
        caller: Who, task_id: str, body: Annotated[PauseBody | None, Body()] = None
    ) -> dict[str, Any]:
        return await caller.client.pause(task_id, note=None if body is None else body.note)

    @router.post(
        "/tasks/{task_id}/unpause",
        response_model=Task,
        summary="Fire again (what was owed is recorded as missed)",
        responses=NOT_FOUND,
    )
    async def unpause_task(caller: Who, task_id: str) -> dict[str, Any]:
        return await caller.client.unpause(task_id)

    @router.get(
        "/tasks/{task_id}/history",
        response_model=History,
        summary="The task's latest runs, latest first",
        responses=NOT_FOUND,
    )
    async def task_history(
        caller: Who, task_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 20
    ) -> dict[str, Any]:
        return {"executions": await caller.client.history(task_id, limit=limit)}

    @router.get(
        "/tasks/{task_id}/missed",
        response_model=Missed,
        summary="The task's fires that did not run, latest first",
        responses=NOT_FOUND,
    )
    async def task_missed(
        caller: Who, task_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> dict[str, Any]:
        return {"missed": await caller.client.missed(task_id, limit=limit)}
