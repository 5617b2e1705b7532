"""medfed's log lines print once, in medfed's format, before and after Opacus's import configures the root logger."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging
from shared.logs import show_medfed_logs

show_medfed_logs(logging.INFO)
logging.getLogger("medfed").setLevel(logging.INFO)
log = logging.getLogger("medfed.server")
log.info("before Opacus")
import opacus  # calls logging.basicConfig
log.info("after Opacus")
logging.getLogger("medfed.site").debug("below the level")
"""


def test_medfed_lines_print_once_in_one_format_whether_or_not_opacus_is_imported():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True)
    lines = [line for line in result.stderr.splitlines() if "Opacus" in line or "level" in line]
    assert lines == ["INFO medfed.server: before Opacus", "INFO medfed.server: after Opacus"], result.stderr
