"""Errors of the message bus. Each carries a stable ``code`` that also travels in error replies."""

from __future__ import annotations

from config.errors import TaskbusError


class BusError(TaskbusError):
    """Something went wrong on the bus."""

    code = "bus_error"


class Refused(BusError):
    """A message or request was refused: ``code`` says why (``denied``, ...), ``reason`` in words.

    The one shape of every refusal: bytes the bus will not decode (:class:`EnvelopeError`), and
    what the broker or a remote peer answered with an error (:class:`RemoteError`).
    """

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class EnvelopeError(Refused, ValueError):
    """Bytes that are not a valid envelope: says which field is wrong and how."""


class AuthError(BusError):
    """Missing or unusable keys, or a peer the broker would not admit."""

    code = "auth"


class RemoteError(Refused):
    """The broker or a remote peer refused a message; ``code`` says why (``denied``, ...).

    ``topic``, when given, is what was asked, and leads the message.
    """

    def __init__(self, code: str, reason: str, *, topic: str | None = None) -> None:
        super().__init__(code, reason)
        self.topic = topic
        if topic is not None:
            self.args = (f"{topic}: {code}: {reason}",)


class NoResponder(RemoteError):
    """Nothing on the bus serves the topic asked (``no_responder``): not started yet, or gone."""

    code = "no_responder"


class Busy(RemoteError):
    """The responder's mailbox is full (``busy``): the same ask may succeed a moment later."""

    code = "busy"


def remote_error(code: str, reason: str, *, topic: str | None = None) -> RemoteError:
    """The refusal a remote answered with, as its most precise class."""
    kind = _PRECISE.get(code, RemoteError)
    return kind(code, reason, topic=topic)


class AskTimeout(BusError, TimeoutError):
    """No reply arrived in time: the responder is slow, gone, or the asker is not authorised."""

    code = "timeout"


class BusClosed(BusError):
    """The client or broker was stopped."""

    code = "closed"


_PRECISE: dict[str, type[RemoteError]] = {NoResponder.code: NoResponder, Busy.code: Busy}
