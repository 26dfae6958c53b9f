"""Every error of the HTTP API is a JSON ``{code, reason}`` with a fitting status; this module is
the one place where a bus refusal, a bad request or a failed login becomes one.

``ErrorRoute`` applies it inside the router itself, so that an application which mounts
``taskbus_router`` gets the same answers without installing handlers of its own;
``install_handlers`` does the same for a whole app (other routers, unknown paths).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Message

from bus import Refused
from config.bus import DEFAULT_MAX_MESSAGE_BYTES
from taskbus.client import Unreachable

log = logging.getLogger("taskbus.http")

# A refusal's code (docs/protocol.md §10 and §13) -> the HTTP status it is answered with.
STATUS_OF_CODE: Mapping[str, int] = {
    "invalid": 422,
    "field": 422,
    "payload": 422,
    "topic": 422,
    "malformed": 400,
    "version": 400,
    "unauthorized": 401,
    "auth": 401,
    "denied": 403,
    "not_found": 404,
    "unknown_topic": 404,
    "method_not_allowed": 405,
    "exists": 409,
    "conflict": 409,
    "oversize": 413,
    "too_large": 413,
    "queue_full": 429,
    "busy": 503,
    "unavailable": 503,
    "no_responder": 503,
    "responder_lost": 503,
    "timeout": 504,
}
# A body is read whole before it is checked: none may be bigger than a bus message. (A body
# without a Content-Length is cut off at the limit as it arrives.)
MAX_BODY_BYTES = DEFAULT_MAX_MESSAGE_BYTES
DEFAULT_STATUS = 500  # handler_error, reply_failed and codes of the future: the server's fault
CODE_OF_STATUS: Mapping[int, str] = {
    400: "malformed",
    401: "unauthorized",
    403: "denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    429: "too_many",
    503: "unavailable",
}


# The ``responses=`` of a route: its statuses and how the OpenAPI document describes them.
Responses = dict[int | str, dict[str, Any]]


class ErrorBody(BaseModel):
    """What every error answers: ``code`` (as on the bus: ``invalid``, ``not_found``,
    ``denied``...) and ``reason`` in words."""

    code: str
    reason: str


class ApiError(Exception):
    """An error answered as ``{code, reason}`` with ``status`` (default: the code's)."""

    def __init__(
        self,
        code: str,
        reason: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason
        self.status = status or STATUS_OF_CODE.get(code, DEFAULT_STATUS)
        self.headers = dict(headers or {})


def unauthorized(reason: str) -> ApiError:
    return ApiError("unauthorized", reason, headers={"WWW-Authenticate": "Bearer"})


def as_api_error(exc: Exception) -> ApiError | None:
    """``exc`` as the error it is answered with; None for an exception that is a bug."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Refused):
        return ApiError(exc.code, exc.reason)
    if isinstance(exc, Unreachable):
        return ApiError("unavailable", str(exc))
    if isinstance(exc, RequestValidationError):
        return ApiError("invalid", validation_reason(exc.errors()))
    if isinstance(exc, StarletteHTTPException):
        code = CODE_OF_STATUS.get(exc.status_code, "error")
        return ApiError(code, str(exc.detail), status=exc.status_code, headers=exc.headers)
    return None


def validation_reason(errors: Any) -> str:
    """Pydantic's errors as one line, each naming its field first (``body.schedule: Field
    required``), as the bus's ``invalid`` reasons do."""
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg"))
    return "; ".join(parts) or "invalid request"


def response(error: ApiError) -> JSONResponse:
    return JSONResponse(
        {"code": error.code, "reason": error.reason},
        status_code=error.status,
        headers=error.headers,
    )


class ErrorRoute(APIRoute):
    """A route whose errors are answered as ``{code, reason}`` whichever app mounts it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answering(request: Request) -> Response:
            try:
                return await handler(_limited(request))
            except Exception as exc:
                error = as_api_error(exc)
                if error is None:
                    raise
                if error.status >= 500:
                    log.warning(
                        "http.error code=%s path=%s reason=%s",
                        error.code,
                        request.url.path,
                        error.reason,
                    )
                return response(error)

        return answering


def _limited(request: Request) -> Request:
    """``request`` whose body is refused (413 ``too_large``) past MAX_BODY_BYTES: at once by
    its Content-Length, else as the bytes arrive."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise _too_large()
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > MAX_BODY_BYTES:
            raise _too_large()
        return message

    return Request(request.scope, receive)


def _too_large() -> StarletteHTTPException:
    return StarletteHTTPException(413, f"a request body is at most {MAX_BODY_BYTES} bytes")


def install_handlers(app: FastAPI) -> None:
    """The same answers for the app's other routes and for paths it does not have."""

    async def handle(request: Request, exc: Exception) -> Response:
        error = as_api_error(exc)
        if error is None:  # a bug: logged with its traceback by the server, not shown
            error = ApiError("internal", "the server failed; its log says why", status=500)
        return response(error)

    for kind in (
        ApiError,
        Refused,
        Unreachable,
        RequestValidationError,
        StarletteHTTPException,
        Exception,
    ):
        app.add_exception_handler(kind, handle)


ERROR_RESPONSES: Responses = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (401, "no token, or an unknown or revoked one (`unauthorized`)"),
        (403, "the token's identity may not do this (`denied`)"),
        (422, "a field is missing, of the wrong type or refused (`invalid`)"),
        (503, "taskbus does not answer (`unavailable`)"),
    )
}
