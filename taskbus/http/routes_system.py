"""``/health``, ``/stats`` and ``/session`` (the cookie a browser page logs in with)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from taskbus.http.auth import COOKIE, Caller, authenticated, gate_of
from taskbus.http.models import Health, Session, SessionBody, Stats

Who = Annotated[Caller, Depends(authenticated)]


def add_system_routes(router: APIRouter) -> None:
    @router.get("/health", response_model=Health, summary="Every actor's health")
    async def health(caller: Who) -> dict[str, Any]:
        return await caller.client.health()

    @router.get("/stats", response_model=Stats, summary="The scheduler's counters (admins)")
    async def stats(caller: Who) -> dict[str, Any]:
        return await caller.client.stats()

    @router.post(
        "/session",
        response_model=Session,
        summary="Log a browser in: the token, checked, becomes an HttpOnly cookie",
    )
    async def open_session(request: Request, body: SessionBody, response: Response) -> Session:
        caller = await gate_of(request).caller(body.token)
        response.set_cookie(
            COOKIE,
            body.token,
            httponly=True,
            samesite="strict",
            path="/",
            secure=request.url.scheme == "https",  # plain http on loopback, else behind TLS
        )
        return Session(identity=caller.identity)

    @router.delete("/session", status_code=204, summary="Log the browser out: clear the cookie")
    async def close_session() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, httponly=True, samesite="strict", path="/")
        return response
