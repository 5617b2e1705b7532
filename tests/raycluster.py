"""A Ray head on this machine for simulations to join, in a process group of its own that is killed at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from simulations.loopback import free_port

BIN = Path(sys.executable).parent
READY = "Ray runtime started"


@contextlib.contextmanager
def ray_head(cpus: int, timeout: float = 120.0) -> Iterator[str]:
    """The head's address once it is up; its GCS, raylet and workers are killed on exit."""
    port, temp = free_port(), tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths are limited
    log = Path(temp) / "head.log"
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--port={port}", f"--num-cpus={cpus}"]
    with log.open("w") as out:
        head = subprocess.Popen(
            [*command, f"--temp-dir={temp}", "--disable-usage-stats", "--include-dashboard=false"],
            stdout=out,  # its address file goes in `temp`, not where every Ray on the machine would find it
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the head's GCS, raylet and workers: one group, killed at the end, nothing else
            env={**os.environ, "OMP_NUM_THREADS": "1"},  # as a simulation's own Ray gets it: one thread per actor
        )
    try:
        deadline = time.monotonic() + timeout
        while READY not in log.read_text():
            if head.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Ray head did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)
