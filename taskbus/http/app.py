"""The FastAPI app and the mountable router (to be built by the REST helper)."""

from __future__ import annotations

from typing import Any


def taskbus_router(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError


def create_app(*args: Any, **kwargs: Any) -> Any:
    raise NotImplementedError
