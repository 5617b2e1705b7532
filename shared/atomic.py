"""Atomic, durable file writes: a crash, a full disk or a power cut leaves the old file or the new one, never half."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object], mode: int = 0o644) -> Path:
    """Write `path` by `write(temp)` on a temp file beside it, fsync it, rename it over `path`, fsync the folder.

    The temp file is created with `mode` before `write` runs (0o600 keeps a private file private from the start).
    On any failure the temp file is removed, freeing its space, and `path` is left exactly as it was.
    """
    path = Path(path)
    # Keeps the suffix: some writers (numpy's savez) append their own when it is missing.
    tmp = path.with_name(f".{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp{path.suffix}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode))
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def atomic_write_bytes(path: Path, content: bytes, mode: int = 0o644) -> Path:
    """`atomic_write` of raw bytes."""
    return atomic_write(path, lambda p: p.write_bytes(content), mode)


def atomic_write_text(path: Path, text: str, mode: int = 0o644) -> Path:
    """`atomic_write` of UTF-8 text."""
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"), mode)


def fsync_path(path: Path) -> None:
    """Flush a file's bytes, or a folder's entries (what makes a rename or a new file in it durable), to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (one call may write fewer)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
