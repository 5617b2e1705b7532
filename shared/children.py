"""Child processes that end with the command that started them: at its exit, and even when it is killed (Linux).

A child is started through this module (`python -P -m shared.children PARENT_PID COMMAND...`), which asks the kernel
for SIGTERM when its parent dies, then execs COMMAND; the request outlives the exec. Not Popen's `preexec_fn`: it runs
Python in a forked copy of a process whose other threads (the agent's log echo, a test runner's) may hold locks the
copy then waits on forever.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence

PR_SET_PDEATHSIG = 1  # linux/prctl.h
END_WAIT_S = 10.0


def dying_with_parent(command: Sequence[str]) -> list[str]:
    """`command` as a child of this process that is sent SIGTERM when this process dies, even by SIGKILL.

    The parent is the thread that starts the child: start it from one that lives as long as the process.
    """
    # -P: the working folder is not first on the path, where a folder named `shared` would stand in for medfed's.
    return [sys.executable, "-P", "-m", "shared.children", str(os.getpid()), *command]


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


def _launch(parent: int, command: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if hasattr(libc, "prctl"):
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request was made: nobody would send the signal
        sys.exit(128 + signal.SIGTERM)
    try:
        os.execvp(command[0], command)
    except OSError as exc:  # as a shell says it: the parent sees the exit code and this line in the child's output
        print(f"cannot run {command[0]}: {exc.strerror}", file=sys.stderr, flush=True)
        sys.exit(127)


if __name__ == "__main__":
    _launch(int(sys.argv[1]), sys.argv[2:])
