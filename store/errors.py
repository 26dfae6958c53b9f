"""The store's errors: one branch of TaskbusError, with lookup, conflict, damage and write-refusal
sub-branches; and what libSQL's failures mean: which a job catches (``engine_failure``), which
say that the file is damaged (``engine_damage``) or takes no writes (``engine_refusal``).
"""

from __future__ import annotations

from config.errors import TaskbusError

# SQLite's messages for a file that is damaged, and for one that takes no writes (SQLITE_FULL,
# SQLITE_IOERR, SQLITE_READONLY); SQLite rolls a transaction back itself after some of these.
_DAMAGE = ("database disk image is malformed", "file is not a database")
_REFUSALS = ("database or disk is full", "disk i/o error", "readonly database")


class StoreError(TaskbusError):
    """The store cannot do what was asked: it cannot open its file, a value is too large or of
    the wrong shape, the disk failed. The message names the file, the record or the field.
    """


class WrongKey(StoreError):
    """The file does not open with the key given: a wrong key, or not a taskbus database."""


class InvalidValue(StoreError, ValueError):
    """A value given to the store is out of its domain; ``field`` names it (``task_id``...)."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class NotFound(StoreError, LookupError):
    """A task, execution or lease the request names does not exist."""


class Conflict(StoreError):
    """The write lost a race: a version or lease token is no longer current."""


class LeaseLost(Conflict):
    """The lease is held by someone else, expired, or has a newer fencing token."""


class Damaged(StoreError):
    """What is stored cannot be read back: a damaged page (SQLite's "database disk image is
    malformed"), or a stored value libSQL cannot decode (libsql 0.1.11 panics on a text that is
    not UTF-8, which is what a page damaged on disk decrypts to). ``what`` names what could not
    be read, ``engine_error`` is the engine's own message.
    """

    def __init__(self, path: object, what: str, engine_error: str) -> None:
        self.path = path
        self.what = what
        self.engine_error = engine_error
        super().__init__(f"store {path}: cannot read {what or 'the file'}: {engine_error}")


class WriteRefused(StoreError):
    """The file takes no writes: the disk is full (SQLite's "database or disk is full"), the
    file is read-only, or the disk fails. Nothing of the write is stored; ``reason`` is the
    engine's message.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"store {path}: cannot write, nothing written: {reason}")


class EngineFailure(StoreError):
    """libSQL failed otherwise than with an SQL error: it panicked (``pyo3_runtime.
    PanicException``, which derives from BaseException, not Exception) or raised something else
    unexpected. ``engine_error`` is what it said.
    """

    def __init__(self, message: str, engine_error: str) -> None:
        self.engine_error = engine_error
        super().__init__(message)


# What a job on the database thread never swallows: a request to end the thread or the process.
NOT_OURS: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, GeneratorExit)


def engine_failure(exc: BaseException) -> str | None:
    """What ``exc`` says, if it is an engine failure to catch: a libsql panic, or any other
    BaseException that is neither an Exception nor one of ``NOT_OURS`` (None otherwise).

    pyo3 turns a Rust panic into ``pyo3_runtime.PanicException``, a BaseException (so that a
    plain ``except Exception`` does not hide it), which the module cannot import by name.
    """
    if isinstance(exc, (Exception, *NOT_OURS)):
        return None
    if type(exc).__name__ == "PanicException":
        if "Utf8Error" in str(exc):
            return f"libsql panicked: {exc} (a stored text is not UTF-8: its page is damaged)"
        return f"libsql panicked: {exc}"
    return f"libsql failed: {type(exc).__name__}: {exc}"


def _engine_messages(exc: BaseException) -> list[str]:
    """The messages of ``exc`` and of the errors it was raised from, innermost last."""
    found: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(found) < 8:
        found.append(str(current))
        current = current.__cause__
    return found


def engine_damage(exc: BaseException) -> str | None:
    """The engine's message if ``exc`` says that the file is damaged."""
    messages = reversed(_engine_messages(exc))
    return next((m for m in messages if any(d in m.lower() for d in _DAMAGE)), None)


def engine_refusal(exc: BaseException) -> str | None:
    """The engine's message if ``exc`` says that the file takes no writes."""
    if isinstance(exc, WriteRefused):
        return exc.reason
    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError):
            return str(current)
        current = current.__cause__
    messages = reversed(_engine_messages(exc))
    return next((m for m in messages if any(r in m.lower() for r in _REFUSALS)), None)
