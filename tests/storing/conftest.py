"""The store actor's tests use the store tests' real encrypted files."""

from tests.store.conftest import data_dir, db_path

__all__ = ["data_dir", "db_path"]
