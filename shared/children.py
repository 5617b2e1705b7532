"""Child processes that end with the command that started them: at its exit, and even when it is killed (Linux)."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Iterable

PR_SET_PDEATHSIG = 1  # linux/prctl.h
END_WAIT_S = 10.0


def die_with_parent() -> None:
    """A `preexec_fn`: in the child, before it runs, ask for SIGTERM when its parent dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def end(children: Iterable[subprocess.Popen], timeout: float = END_WAIT_S) -> None:
    """SIGTERM every child still running, then SIGKILL any that has not exited `timeout` seconds later."""
    running = [child for child in children if child.poll() is None]
    for child in running:
        child.terminate()
    for child in running:
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
