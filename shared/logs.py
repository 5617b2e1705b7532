"""medfed's own log lines on a terminal, in one format, whatever another library has done to the root logger."""

from __future__ import annotations

import logging

FORMAT = "%(levelname)s %(name)s: %(message)s"


def show_medfed_logs(level: int) -> None:
    """Print medfed's records at `level` and above on stderr through a handler of their own, not the root logger.

    Opacus's import calls `logging.basicConfig`: through the root logger, medfed's lines would print in Opacus's format,
    and only in a process that happened to import Opacus (a private study), or twice where another handler shows them.
    """
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(FORMAT))
    medfed = logging.getLogger("medfed")
    medfed.addHandler(handler)
    medfed.propagate = False
