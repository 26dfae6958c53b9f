"""Bearer tokens of the HTTP API: each maps to one bus identity of this host, stored hashed.

``keys/http_tokens.json`` (mode 0600, written atomically; a file others can use is refused, as
``master.key`` is) holds, per token, its SHA-256, its identity and when it was issued. The token
itself is printed once by ``taskbus keys token <identity>`` and never stored. An identity may
hold several tokens; revoking it revokes them all. Importing this module needs no HTTP package:
the CLI issues tokens without the ``http`` extra.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bus import KeysDirectory
from bus.errors import AuthError
from bus.keys import check_identity
from store.keys import not_private, replace_private_file

TOKENS_FILE = "http_tokens.json"
TOKEN_PREFIX = "tb_"
TOKEN_BYTES = 32
FILE_VERSION = 1


class TokenError(AuthError):
    """The tokens file cannot be used, or a token cannot be issued."""


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """One issued token: the SHA-256 of the token (hex), its identity and when it was issued."""

    identity: str
    digest: str = field(repr=False)
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Issued:
    """A new token (shown once) and its entry."""

    token: str = field(repr=False)
    entry: TokenEntry


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class TokenBook:
    """The tokens of the keys directory ``keys``. Reads are cached and re-read when the file
    changes, so a token issued or revoked by the CLI counts at the next request."""

    def __init__(self, keys: KeysDirectory | Path) -> None:
        self.keys = keys if isinstance(keys, KeysDirectory) else KeysDirectory(keys)
        self._seen: tuple[int, int, int] | None = None
        self._entries: tuple[TokenEntry, ...] = ()

    @property
    def path(self) -> Path:
        return self.keys.root / TOKENS_FILE

    def identity_of(self, token: str) -> str | None:
        """The identity ``token`` maps to; None for an unknown or revoked one. Every entry is
        compared (``hmac.compare_digest``), so the time taken does not tell which matched."""
        wanted = digest(token)
        found: str | None = None
        for entry in self.entries():
            if hmac.compare_digest(entry.digest, wanted):
                found = entry.identity
        return found

    def entries(self) -> tuple[TokenEntry, ...]:
        """Every issued token's entry; TokenError if the file is unsafe or unreadable."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            self._seen, self._entries = None, ()
            return ()
        except OSError as exc:
            raise TokenError(f"cannot read tokens file {self.path}: {exc.strerror}") from exc
        unsafe = not_private(self.path, info)
        if unsafe is not None:
            raise TokenError(f"tokens file {unsafe}")
        seen = (info.st_ino, info.st_mtime_ns, info.st_size)
        if seen != self._seen:
            self._entries, self._seen = self._read(), seen
        return self._entries

    def issue(self, identity: str, *, now: datetime | None = None) -> Issued:
        """A new random token for ``identity``, whose keypair must be on this host (the HTTP
        server acts as it on the bus). Earlier tokens of the identity stay valid."""
        check_identity(identity)
        secret_file = self.keys.identities_dir / f"{identity}.key_secret"
        if not secret_file.exists():
            raise TokenError(
                f"identity {identity!r} has no keypair on this host ({secret_file}): create it "
                f"with 'taskbus keys init --identity {identity}'"
            )
        token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
        entry = TokenEntry(identity, digest(token), now or datetime.now(UTC))
        with self._editing() as entries:
            entries.append(entry)
        return Issued(token, entry)

    def revoke(self, identity: str) -> int:
        """Revokes every token of ``identity``; how many there were."""
        check_identity(identity)
        with self._editing() as entries:
            kept = [entry for entry in entries if entry.identity != identity]
            revoked = len(entries) - len(kept)
            entries[:] = kept
        return revoked

    @contextlib.contextmanager
    def _editing(self) -> Iterator[list[TokenEntry]]:
        """The entries to change in place, written back atomically; one editor at a time."""
        self.keys.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock = os.open(self.keys.root / f".{TOKENS_FILE}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = list(self.entries())
            yield entries
            document = {
                "version": FILE_VERSION,
                "tokens": [
                    {
                        "identity": entry.identity,
                        "sha256": entry.digest,
                        "created_at": entry.created_at.isoformat(),
                    }
                    for entry in entries
                ],
            }
            replace_private_file(self.path, (json.dumps(document, indent=2) + "\n").encode())
        finally:
            os.close(lock)

    def _read(self) -> tuple[TokenEntry, ...]:
        try:
            document: Any = json.loads(self.path.read_bytes())
            if document.get("version") != FILE_VERSION:
                raise ValueError(f"version {document.get('version')!r}, expected {FILE_VERSION}")
            return tuple(
                TokenEntry(
                    check_identity(str(item["identity"])),
                    str(item["sha256"]),
                    datetime.fromisoformat(str(item["created_at"])),
                )
                for item in document["tokens"]
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError, AuthError) as exc:
            raise TokenError(f"cannot read tokens file {self.path}: {exc}") from exc
