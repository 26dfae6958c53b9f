"""CurveZMQ key files in zmq.auth's certificate format, and the keys directory layout.

Layout of a keys directory::

    server/broker.key, server/broker.key_secret   the broker's keypair
    allowed/<identity>.key                        public keys the broker admits (the allow-list)
    identities/<identity>.key_secret              client keypairs kept on this host (0600)

A peer's authenticated identity is the file name of its allowed public key.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth

from bus.errors import AuthError

log = logging.getLogger("taskbus.bus.keys")

# Words of lowercase letters, digits, '_' and '-' joined by single dots, 1-64 characters: an
# identity is also a word of topics (a task's events go to scheduler.task.status.<owner>).
IDENTITY_PATTERN = re.compile(r"^(?=.{1,64}$)[a-z0-9][a-z0-9_-]*(\.[a-z0-9_-]+)*$")
BROKER_NAME = "broker"


@dataclass(frozen=True, slots=True)
class KeyPair:
    """Z85-encoded CURVE keys."""

    public: bytes
    secret: bytes = field(repr=False)


def check_identity(name: str) -> str:
    if not IDENTITY_PATTERN.fullmatch(name):
        raise AuthError(
            f"identity {name!r} must be lowercase letters, digits, '_' or '-' (1-64 "
            "characters), in words joined by single dots"
        )
    return name


def write_keypair(directory: Path, name: str) -> KeyPair:
    """Create ``name.key`` (public) and ``name.key_secret`` (mode 0600) in ``directory``."""
    check_identity(name)
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the keys root, if new
    directory.mkdir(exist_ok=True, mode=0o700)
    public, secret = zmq.curve_keypair()
    _write_certificate(directory / f"{name}.key", public, None, 0o644)
    _write_certificate(directory / f"{name}.key_secret", public, secret, 0o600)
    return KeyPair(public, secret)


def write_public_key(path: Path, public: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _write_certificate(path, public, None, 0o644)


def load_keypair(secret_file: Path) -> KeyPair:
    public, secret = _load(secret_file)
    if secret is None:
        raise AuthError(f"{secret_file} holds no secret key")
    return KeyPair(public, secret)


def load_public_key(path: Path) -> bytes:
    return _load(path)[0]


def load_allow_list(directory: Path) -> dict[bytes, str]:
    """Z85 public key -> identity, for every ``<identity>.key`` in ``directory``."""
    allowed: dict[bytes, str] = {}
    if not directory.is_dir():
        return allowed
    for path in sorted(directory.glob("*.key")):
        identity = path.stem
        if IDENTITY_PATTERN.fullmatch(identity):
            try:
                public = load_public_key(path)
            except AuthError as exc:  # one unreadable file must not lock every peer out
                log.warning("bus.keys skipped an allow-list entry: %s", exc)
                continue
            if public in allowed:
                log.warning(
                    "bus.keys %s holds the key already allowed as %r; it is ignored",
                    path,
                    allowed[public],
                )
                continue
            allowed[public] = identity
    return allowed


@dataclass(frozen=True, slots=True)
class KeysDirectory:
    root: Path

    @property
    def server_dir(self) -> Path:
        return self.root / "server"

    @property
    def allowed_dir(self) -> Path:
        return self.root / "allowed"

    @property
    def identities_dir(self) -> Path:
        return self.root / "identities"

    def broker_keypair(self, create: bool = False) -> KeyPair:
        secret_file = self.server_dir / f"{BROKER_NAME}.key_secret"
        if not secret_file.exists():
            if not create:
                raise AuthError(f"no broker keypair at {secret_file}; run 'taskbus keys init'")
            return write_keypair(self.server_dir, BROKER_NAME)
        return load_keypair(secret_file)

    def broker_public_key(self) -> bytes:
        return load_public_key(self.server_dir / f"{BROKER_NAME}.key")

    def identity_keypair(self, identity: str, create: bool = False, allow: bool = True) -> KeyPair:
        """A client keypair kept on this host; with ``create`` it is made (and, with ``allow``,
        admitted by this host's broker)."""
        secret_file = self.identities_dir / f"{check_identity(identity)}.key_secret"
        if not secret_file.exists():
            if not create:
                raise AuthError(f"no keypair for identity {identity!r} at {secret_file}")
            pair = write_keypair(self.identities_dir, identity)
            if allow:
                self.allow(identity, pair.public)
            return pair
        return load_keypair(secret_file)

    def trust_broker(self, public: bytes) -> Path:
        """Record the public key of a broker on another host (clients need only that)."""
        if (self.server_dir / f"{BROKER_NAME}.key_secret").exists():
            raise AuthError(
                f"{self.server_dir} holds this host's own broker keypair; use a separate "
                "--home for the identity that joins a broker elsewhere"
            )
        path = self.server_dir / f"{BROKER_NAME}.key"
        write_public_key(path, public)
        return path

    def allow(self, identity: str, public: bytes) -> Path:
        path = self.allowed_dir / f"{check_identity(identity)}.key"
        write_public_key(path, public)
        return path

    def allowed(self) -> dict[bytes, str]:
        return load_allow_list(self.allowed_dir)


def _write_certificate(path: Path, public: bytes, secret: bytes | None, mode: int) -> None:
    kind = "secret" if secret is not None else "public"
    lines = [
        f"#   taskbus CURVE {kind} key, created {datetime.datetime.now(datetime.UTC):%Y-%m-%d}",
        "#   ZeroMQ CURVE certificate (zmq.auth format)" + (": keep private" if secret else ""),
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow it
        os.write(fd, ("\n".join(lines) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _load(path: Path) -> tuple[bytes, bytes | None]:
    try:
        return zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise AuthError(f"cannot read key file {path}: {exc}") from exc
