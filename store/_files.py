"""Durable file operations: copies and directory entries that survive a power cut."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def sync_directory(directory: Path) -> None:
    """Make the names created, renamed or removed in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_durably(source: Path, destination: Path) -> None:
    """Copy ``source`` to ``destination`` (mode 0600) through a temporary name, fsynced."""
    partial = destination.with_name(destination.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with source.open("rb") as reader, os.fdopen(fd, "wb") as writer:
        shutil.copyfileobj(reader, writer, 1024 * 1024)
        writer.flush()
        os.fsync(writer.fileno())
    os.replace(partial, destination)
    sync_directory(destination.parent)
