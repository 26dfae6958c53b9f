"""Validation helpers shared by the settings classes; each raises ConfigError naming the key."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from config.errors import ConfigError

_TIMEZONE_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+)*")
_SECRET_WORDS = ("secret", "password", "passphrase", "token", "credential", "api_key", "private")


class _Marker:
    """A value shown in messages instead of something absent or secret."""

    __slots__ = ("_text",)

    def __init__(self, text: str) -> None:
        self._text = text

    def __repr__(self) -> str:
        return self._text


MISSING: Final = _Marker("<missing>")
REDACTED: Final = _Marker("<redacted>")


def looks_secret(key: str) -> bool:
    """Whether a setting's last name suggests a secret (``api_token``, ``db_password``...)."""
    name = key.rsplit(".", 1)[-1].lower()
    return any(word in name for word in _SECRET_WORDS)


def shown(key: str, value: object) -> object:
    """The value as an error message may show it: secrets, also inside tables, are redacted."""
    if looks_secret(key):
        return REDACTED
    if isinstance(value, Mapping):
        return {name: shown(str(name), item) for name, item in value.items()}
    return value


def require_bool(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")


def require_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(key, value, f"one of {', '.join(choices)}")


def require_timezone_name(key: str, value: object) -> None:
    """The syntax of an IANA zone name; whether the zone exists is checked by the loader."""
    if not isinstance(value, str) or len(value) > 64 or not _TIMEZONE_PATTERN.fullmatch(value):
        raise ConfigError(key, value, "an IANA time zone name such as 'UTC' or 'Europe/Berlin'")


def require_absolute_path(key: str, value: object) -> None:
    if not isinstance(value, Path) or not value.is_absolute():
        raise ConfigError(key, value, "an absolute path")
