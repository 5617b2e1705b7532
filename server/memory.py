"""Peak memory of this process and every process it started (a simulation's Ray actors included), per round."""

from __future__ import annotations

import os
import threading

import psutil

GIB = 2**30
SAMPLE_S = 0.25


class MemoryWatch:
    """Samples the resident memory of the process tree in a background thread; `take()` hands over the peaks seen
    since the last take."""

    def __init__(self, interval_s: float = SAMPLE_S) -> None:
        self._root = psutil.Process(os.getpid())
        self._interval = interval_s
        self._lock = threading.Lock()
        self._peak_total = self._peak_process = 0
        self._processes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="medfed-memory", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> None:
        """Measure once now."""
        sizes = []
        for proc in [self._root, *self._root.children(recursive=True)]:
            try:
                sizes.append(proc.memory_info().rss)
            except psutil.Error:  # it ended between listing and measuring
                continue
        with self._lock:
            self._peak_total = max(self._peak_total, sum(sizes))
            self._peak_process = max(self._peak_process, max(sizes, default=0))
            self._processes = max(self._processes, len(sizes))

    def take(self) -> dict[str, float]:
        """The peaks since the last take, in GiB: the whole tree's total and its largest process; then reset."""
        self.sample()
        with self._lock:
            peaks = {
                "peak-total-gib": self._peak_total / GIB,
                "peak-process-gib": self._peak_process / GIB,
                "processes": self._processes,
            }
            self._peak_total = self._peak_process = self._processes = 0
        return peaks

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.sample()


def machine_gib() -> float:
    """The machine's total memory in GiB."""
    return psutil.virtual_memory().total / GIB
