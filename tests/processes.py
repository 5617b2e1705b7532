"""Looking at processes from a test: a process's children, whether one has ended, waiting for a condition."""

from __future__ import annotations

import time
from pathlib import Path


def child_pids(pid: int) -> list[int]:
    """The PIDs of a process's children (Linux)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


def ended(pid: int) -> bool:
    """Whether the process is gone or a zombie waiting to be reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def wait_for(condition, timeout: float):
    """`condition()`'s first true value, polled every 0.2 s; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)
    return result
