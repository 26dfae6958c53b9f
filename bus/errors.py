"""Errors of the message bus. Each carries a stable ``code`` that also travels in error replies."""

from __future__ import annotations

from config.errors import TaskbusError


class BusError(TaskbusError):
    """Something went wrong on the bus."""

    code = "bus_error"


class EnvelopeError(BusError, ValueError):
    """Bytes that are not a valid envelope: says which field is wrong and how."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class AuthError(BusError):
    """Missing or unusable keys, or a peer the broker would not admit."""

    code = "auth"


class RemoteError(BusError):
    """The broker or a remote peer refused a message; ``code`` says why (``denied``, ...)."""

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class AskTimeout(BusError, TimeoutError):
    """No reply arrived in time: the responder is slow, gone, or the asker is not authorised."""

    code = "timeout"


class BusClosed(BusError):
    """The client or broker was stopped."""

    code = "closed"
