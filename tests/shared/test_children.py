"""A child started through `dying_with_parent` runs its own command in place and ends when its parent is killed."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from shared.children import dying_with_parent, end
from tests.processes import ended, wait_for

PARENT = """
import subprocess, sys, threading, time
from shared.children import dying_with_parent
busy = threading.Thread(target=lambda: [time.sleep(0.001) for _ in iter(int, 1)], daemon=True)
busy.start()  # a second thread, as the agent's log echo is
child = subprocess.Popen(dying_with_parent(["sleep", "600"]))
print(child.pid, flush=True)
child.wait()
"""


def test_the_child_execs_its_command_and_ends_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        wait_for(lambda: Path(f"/proc/{child}/cmdline").read_bytes() == b"sleep\x00600\x00", 30)  # the same PID
        parent.kill()  # SIGKILL: the parent runs no clean-up of its own
        parent.wait(timeout=10)
        wait_for(lambda: ended(child), 10)
    finally:
        parent.kill()


def test_a_folder_named_shared_where_the_child_starts_is_not_imported(tmp_path):
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "__init__.py").write_text("raise SystemExit('the working folder was imported')\n")
    result = subprocess.run(
        dying_with_parent(["echo", "ran"]), cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stdout == "ran\n", result.stderr


def test_a_command_that_cannot_run_is_named_not_a_traceback(tmp_path):
    result = subprocess.run(dying_with_parent([str(tmp_path / "gone")]), capture_output=True, text=True, timeout=30)
    assert result.returncode == 127 and result.stderr == f"cannot run {tmp_path / 'gone'}: No such file or directory\n"


def test_a_child_whose_parent_is_already_gone_does_not_run():
    """The parent died before the child asked to follow it: the child would run on, unwatched."""
    launcher = dying_with_parent(["sleep", "600"])
    launcher[launcher.index("shared.children") + 1] = "1"  # a parent that is not this child's
    result = subprocess.run(launcher, timeout=30, check=False)
    assert result.returncode == 143


def test_end_terminates_then_kills_a_child_that_ignores_sigterm():
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint(flush=True)\ntime.sleep(600)",
        ],
        stdout=subprocess.PIPE,
    )
    stubborn.stdout.readline()  # its handler is in place
    done = threading.Event()
    threading.Thread(target=lambda: (end([stubborn], timeout=1), done.set()), daemon=True).start()
    assert done.wait(30) and stubborn.returncode == -9
