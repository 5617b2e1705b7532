"""Writes that survive a crash: bytes fsync'd, then an atomic rename, then the folder's entry fsync'd."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, path: Path) -> None:
    """Move the finished file `tmp` over `path` so that a crash leaves either the old file or the new one."""
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)


def write_durably(path: Path, data: bytes) -> None:
    """Replace `path` with `data` (mode 0600) atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)
    replace_durably(tmp, path)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
