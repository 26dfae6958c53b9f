"""The token book on real files, and ``taskbus keys token`` as a user runs it: a token is shown
once and stored only as its SHA-256, in a 0600 file; revoked tokens stop counting; a file others
could read is refused, as master.key is."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus import KeysDirectory
from bus.errors import AuthError
from taskbus.http.tokens import TokenBook, TokenError
from tests.e2e.procs import taskbus


@pytest.fixture
def book(tmp_path: Path) -> TokenBook:
    keys = KeysDirectory(tmp_path / "keys")
    for identity in ("ana", "bo"):
        keys.identity_keypair(identity, create=True)
    return TokenBook(keys)


def test_a_token_maps_to_its_identity_and_only_its_hash_is_stored(book: TokenBook) -> None:
    now = datetime(2026, 5, 1, 12, tzinfo=UTC)
    issued = book.issue("ana", now=now)

    assert issued.token.startswith("tb_")
    assert len(issued.token) == 3 + 43  # 32 random bytes, urlsafe base64
    assert book.identity_of(issued.token) == "ana"
    assert book.identity_of(issued.token + "x") is None
    assert book.identity_of("") is None
    assert issued.token not in repr(issued)
    text = book.path.read_text()
    assert issued.token not in text
    assert json.loads(text) == {
        "version": 1,
        "tokens": [
            {
                "identity": "ana",
                "sha256": hashlib.sha256(issued.token.encode()).hexdigest(),
                "created_at": "2026-05-01T12:00:00+00:00",
            }
        ],
    }
    assert stat.S_IMODE(book.path.stat().st_mode) == 0o600


def test_revoking_an_identity_revokes_all_its_tokens_and_no_others(book: TokenBook) -> None:
    first, second, other = book.issue("ana"), book.issue("ana"), book.issue("bo")
    assert book.identity_of(first.token) == book.identity_of(second.token) == "ana"

    assert book.revoke("ana") == 2
    assert book.identity_of(first.token) is None
    assert book.identity_of(second.token) is None
    assert book.identity_of(other.token) == "bo"
    assert book.revoke("ana") == 0


def test_another_book_on_the_same_directory_sees_changes_at_once(book: TokenBook) -> None:
    """The server's book, while the CLI issues and revokes with its own."""
    server = TokenBook(book.keys)
    assert server.entries() == ()
    issued = book.issue("ana")
    assert server.identity_of(issued.token) == "ana"
    book.revoke("ana")
    assert server.identity_of(issued.token) is None


def test_an_identity_without_a_keypair_here_gets_no_token(book: TokenBook) -> None:
    with pytest.raises(
        TokenError, match=r"'cy' has no keypair on this host .*'taskbus keys init --identity cy'"
    ):
        book.issue("cy")
    with pytest.raises(AuthError, match="identity 'Not Valid'"):
        book.issue("Not Valid")
    assert not book.path.exists()


def test_a_tokens_file_others_can_read_is_refused(book: TokenBook) -> None:
    issued = book.issue("ana")
    book.path.chmod(0o640)
    message = rf"tokens file {book.path} is accessible to other users \(mode 0640\).*chmod 600"
    with pytest.raises(TokenError, match=message):
        book.identity_of(issued.token)
    with pytest.raises(TokenError, match=message):
        book.issue("bo")
    os.chmod(book.path, 0o600)
    assert book.identity_of(issued.token) == "ana"


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"version": 2, "tokens": []}',
        b'{"version": 1, "tokens": [{"identity": "ana"}]}',
    ],
)
def test_a_damaged_tokens_file_is_an_error_not_an_open_door(
    book: TokenBook, content: bytes
) -> None:
    book.issue("ana")
    book.path.write_bytes(content)
    with pytest.raises(TokenError, match=f"cannot read tokens file {book.path}"):
        book.identity_of("tb_anything")


def test_keys_token_prints_the_token_alone_on_its_last_line(tmp_path: Path) -> None:
    env = {**os.environ, "TASKBUS_HOME": str(tmp_path / "home")}
    assert taskbus(env, "keys", "init", "--identity", "ana").returncode == 0

    issued = taskbus(env, "keys", "token", "ana")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.splitlines()[-1]
    assert token.startswith("tb_")
    assert issued.stdout == token + "\n"
    assert "--revoke ana" in issued.stderr
    book = TokenBook(tmp_path / "home" / "keys")
    assert book.identity_of(token) == "ana"

    listed = taskbus(env, "keys", "list")
    assert [line.split()[-3:] for line in listed.stdout.splitlines() if line.startswith("ana")] == [
        ["1", "http", "token"]
    ]
    revoked = taskbus(env, "keys", "token", "--revoke", "ana")
    assert (revoked.returncode, revoked.stdout) == (0, "revoked 1 token of ana\n")
    assert book.identity_of(token) is None


def test_keys_token_for_an_identity_without_a_keypair_is_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "TASKBUS_HOME": str(tmp_path / "home")}
    result = taskbus(env, "keys", "token", "cy")
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("taskbus: identity 'cy' has no keypair on this host")
    assert line.endswith("create it with 'taskbus keys init --identity cy'")
