"""The master key: where it comes from, how its file is made, and the database key it yields."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from config import PathSettings, Settings
from store import MASTER_KEY_ENV, LibsqlStore, MasterKey, StoreError
from store.keys import create_key_file, read_key_file, resolve_master_key
from tests.store.conftest import StoreFactory, file_hashes

SECRET = bytes(range(32))


def test_a_new_key_file_holds_32_random_bytes_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "data" / "master.key"
    key = create_key_file(path)
    assert path.read_bytes() == key.secret
    assert len(key.secret) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).secret == key.secret
    assert create_key_file(tmp_path / "other.key").secret != key.secret
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temporary left


def test_creating_a_key_that_exists_keeps_the_existing_one(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    first = create_key_file(path)
    assert create_key_file(path).secret == first.secret


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    create_key_file(path)
    path.chmod(0o640)
    with pytest.raises(StoreError, match=r"accessible to other users \(mode 0640\).*chmod 600"):
        read_key_file(path)


def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(StoreError, match="holds 5 bytes, expected 32"):
        read_key_file(path)


def test_a_missing_key_file_is_not_created_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    with pytest.raises(StoreError, match=r"master key file .* is missing"):
        resolve_master_key(supplied=None, environ={}, key_file=path, create=False)
    assert not path.exists()


@pytest.mark.parametrize(
    "text",
    [
        SECRET.hex(),
        SECRET.hex().upper(),
        base64.b64encode(SECRET).decode(),
        base64.urlsafe_b64encode(SECRET).decode(),
        f"  {SECRET.hex()}\n",
    ],
)
def test_the_environment_variable_takes_hex_or_base64(tmp_path: Path, text: str) -> None:
    key = resolve_master_key(
        supplied=None, environ={MASTER_KEY_ENV: text}, key_file=tmp_path / "k", create=True
    )
    assert key.secret == SECRET
    assert key.source == f"${MASTER_KEY_ENV}"
    assert not (tmp_path / "k").exists()


@pytest.mark.parametrize("text", ["abc", "zz" * 32, base64.b64encode(b"x" * 31).decode()])
def test_a_bad_environment_key_is_refused_without_showing_it(tmp_path: Path, text: str) -> None:
    with pytest.raises(StoreError) as caught:
        resolve_master_key(
            supplied=None, environ={MASTER_KEY_ENV: text}, key_file=tmp_path / "k", create=True
        )
    message = str(caught.value)
    assert f"${MASTER_KEY_ENV}" in message
    assert "64 hex digits or the base64 of 32 bytes" in message
    assert text not in message


def test_the_host_s_key_wins_over_the_environment_and_the_file(tmp_path: Path) -> None:
    host = MasterKey(SECRET)
    key = resolve_master_key(
        supplied=host,
        environ={MASTER_KEY_ENV: "00" * 32},
        key_file=tmp_path / "k",
        create=True,
    )
    assert key is host


def test_a_master_key_must_be_32_bytes_and_never_shows_them() -> None:
    with pytest.raises(StoreError, match="expected 32 bytes, got 16"):
        MasterKey(b"x" * 16)
    key = MasterKey(SECRET, "the tests")
    assert SECRET.hex() not in repr(key)
    assert repr(SECRET) not in repr(key)
    database_key = key.database_key()
    assert database_key.secret not in repr(database_key)


def test_the_database_key_is_hkdf_of_the_master_key_per_version() -> None:
    key = MasterKey(SECRET)
    first = key.database_key()
    assert first == MasterKey(SECRET).database_key()  # deterministic
    assert len(first.secret) == 64
    assert int(first.secret, 16) >= 0  # hex
    assert first.secret != SECRET.hex()  # derived, not the master key itself
    assert key.database_key(2).secret != first.secret
    assert MasterKey(bytes(32)).database_key().secret != first.secret


async def test_a_new_store_creates_its_key_file_and_reuses_it(
    make_store: StoreFactory, data_dir: Path
) -> None:
    store = await make_store()
    key_file = data_dir / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "taskbus.db").stat().st_mode) == 0o600
    assert store.key_source == f"file {key_file}"
    secret = key_file.read_bytes()
    await store.close()
    await make_store()
    assert key_file.read_bytes() == secret


async def test_an_existing_database_without_its_key_file_is_not_given_a_new_key(
    make_store: StoreFactory, data_dir: Path
) -> None:
    store = await make_store()
    await store.close()
    os.remove(data_dir / "master.key")
    with pytest.raises(StoreError, match=r"master key file .* is missing"):
        await make_store()
    assert not (data_dir / "master.key").exists()


async def test_a_store_keyed_from_the_environment_writes_no_key_file(
    make_store: StoreFactory, data_dir: Path
) -> None:
    store = await make_store(environ={MASTER_KEY_ENV: SECRET.hex()})
    assert store.key_source == f"${MASTER_KEY_ENV}"
    assert not (data_dir / "master.key").exists()


async def test_from_settings_uses_the_configured_paths(data_dir: Path) -> None:
    settings = Settings(paths=PathSettings.under(data_dir))
    store = LibsqlStore.from_settings(settings, environ={})
    assert (store.path, store.key_file) == (data_dir / "taskbus.db", data_dir / "master.key")
    async with store:
        assert store.key_source == f"file {data_dir / 'master.key'}"
    assert sorted(file_hashes(data_dir)) == ["master.key", "taskbus.db"]  # the log is gone
