"""The master key and the database key derived from it.

The **master key** is 32 random bytes. It comes from, in this order: the host application
(``MasterKey(...)`` handed to the store), the environment variable ``TASKBUS_MASTER_KEY``
(64 hex digits, or the base64 of 32 bytes), or the file ``<data_dir>/master.key`` (the raw 32
bytes, mode 0600), which is created on first run.

The **database key** is derived from it with HKDF-SHA256 (no salt, ``info`` =
``KEY_INFO`` + the key version) and given to libSQL as 64 hex digits. Nothing else is ever derived
from the same ``info``, so the master key can also feed other keys with other labels.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from store._files import sync_directory
from store.errors import StoreError

MASTER_KEY_BYTES = 32
MASTER_KEY_ENV = "TASKBUS_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
KEY_INFO = b"taskbus store database key v"
KEY_VERSION = 1


@dataclass(frozen=True, slots=True)
class DatabaseKey:
    """What libSQL is opened with; ``secret`` never appears in a repr or a message."""

    secret: str = field(repr=False)
    version: int = KEY_VERSION


@dataclass(frozen=True, slots=True)
class MasterKey:
    """32 secret bytes; ``source`` says where they came from (for messages, never the bytes)."""

    secret: bytes = field(repr=False)
    source: str = "the host application"

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != MASTER_KEY_BYTES:
            size = len(self.secret) if isinstance(self.secret, bytes) else type(self.secret)
            raise StoreError(
                f"master key from {self.source}: expected {MASTER_KEY_BYTES} bytes, got {size}"
            )

    @classmethod
    def generate(cls, source: str = "a new random key") -> MasterKey:
        return cls(secrets.token_bytes(MASTER_KEY_BYTES), source)

    @classmethod
    def parse(cls, text: str, source: str) -> MasterKey:
        """64 hex digits, or standard or URL-safe base64 of exactly 32 bytes."""
        text = text.strip()
        decoded: bytes | None = None
        if len(text) == 2 * MASTER_KEY_BYTES:
            with contextlib.suppress(ValueError):
                decoded = bytes.fromhex(text)
        if decoded is None:
            with contextlib.suppress(binascii.Error, ValueError):
                decoded = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        if decoded is None or len(decoded) != MASTER_KEY_BYTES:
            raise StoreError(
                f"master key from {source}: expected {2 * MASTER_KEY_BYTES} hex digits or the "
                f"base64 of {MASTER_KEY_BYTES} bytes"
            )
        return cls(decoded, source)

    def database_key(self, version: int = KEY_VERSION) -> DatabaseKey:
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=None,
            info=KEY_INFO + str(version).encode("ascii"),
        )
        return DatabaseKey(hkdf.derive(self.secret).hex(), version)


def resolve_master_key(
    *,
    supplied: MasterKey | None,
    environ: Mapping[str, str],
    key_file: Path,
    create: bool,
) -> MasterKey:
    """The host's key, else ``$TASKBUS_MASTER_KEY``, else the key file.

    The key file is created (32 random bytes, mode 0600) only if ``create``: the store asks for
    that when its database does not exist yet, because a new key cannot open an old database.
    """
    if supplied is not None:
        return supplied
    text = environ.get(MASTER_KEY_ENV, "")
    if text:
        return MasterKey.parse(text, f"${MASTER_KEY_ENV}")
    if key_file.exists() or not create:
        return read_key_file(key_file)
    return create_key_file(key_file)


def read_key_file(path: Path) -> MasterKey:
    """The key in ``path``; refused if the file is missing, readable by others or the wrong size."""
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError:
        raise StoreError(
            f"master key file {path} is missing (and ${MASTER_KEY_ENV} is not set): the "
            f"database cannot be opened without the key it was created with"
        ) from None
    except OSError as exc:
        raise StoreError(f"cannot read master key file {path}: {exc.strerror}") from exc
    unsafe = not_private(path, info)
    if unsafe is not None:
        raise StoreError(f"master key file {unsafe}")
    if len(data) != MASTER_KEY_BYTES:
        raise StoreError(
            f"master key file {path} holds {len(data)} bytes, expected {MASTER_KEY_BYTES}"
        )
    return MasterKey(data, f"file {path}")


def create_key_file(path: Path) -> MasterKey:
    """A new random key in ``path`` (mode 0600); if another process won the race, its key."""
    key = MasterKey.generate(f"file {path}")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = _write_private(path, key.secret)
    try:
        os.link(temporary, path)  # atomic, and refuses to replace a key someone else created
    except FileExistsError:
        return read_key_file(path)
    finally:
        temporary.unlink()
    sync_directory(path.parent)
    return key


def replace_key_file(path: Path, key: MasterKey) -> None:
    """Atomically make ``key`` the content of ``path`` (mode 0600), durably."""
    replace_private_file(path, key.secret)


def replace_private_file(path: Path, data: bytes) -> None:
    """Atomically make ``data`` the content of ``path`` (mode 0600), durably: a secret file
    (a key, the HTTP tokens' hashes) that readers never see half written."""
    temporary = _write_private(path, data)
    os.replace(temporary, path)
    sync_directory(path.parent)


def not_private(path: Path, info: os.stat_result) -> str | None:
    """Why the secret file ``path`` (``info`` its stat) must be refused: it is accessible to
    other users; None when only its owner may use it. The one rule for every secret file."""
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        return (
            f"{path} is accessible to other users (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"run 'chmod 600 {path}'"
        )
    return None


def _write_private(path: Path, data: bytes) -> Path:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return temporary
