"""The site's journal survives accidents and says when it was tampered with: restores, edits, races, kill -9."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.privacy import journal
from shared.privacy.journal import Journal, LedgerError, LedgerFiles, recover, verify
from tests.shared.privacy.records import SITE, round_record

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import os, sys, time
from pathlib import Path
from shared.privacy.journal import Journal, LedgerFiles
from tests.shared.privacy.records import round_record
folder, study, count, signal_file = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
files = LedgerFiles.at(folder, "hospital-1")
{setup}
for rnd in range(count):
    Journal.open(files, "hospital-1").append(lambda latest: round_record(study, rnd))
"""
RACE = """
while not signal_file.exists():  # both processes start appending together
    time.sleep(0.005)
"""
# Killed in the middle of the second append: half its line written, or the whole line written but never fsync'd.
TORN = """
Journal.open(files, "hospital-1").append(lambda latest: round_record(study, 0))
def stuck(fd, data):
    os.__dict__["real_write"](fd, bytes(data[: len(data) // 2]))
    signal_file.write_text("stuck"); time.sleep(60)
os.__dict__["real_write"], os.write = os.write, stuck
"""
UNSYNCED = """
Journal.open(files, "hospital-1").append(lambda latest: round_record(study, 0))
def stuck(fd):
    signal_file.write_text("stuck"); time.sleep(60)
os.fsync = stuck
"""


def spawn(folder: Path, study: str, count: int, signal_file: Path, setup: str = "") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    code = SCRIPT.replace("{setup}", setup)
    return subprocess.Popen([sys.executable, "-c", code, str(folder), study, str(count), str(signal_file)], env=env)


def files_with(tmp_path: Path, rounds: int) -> LedgerFiles:
    files = LedgerFiles.at(tmp_path / "ledgers", SITE)
    for rnd in range(1, rounds + 1):
        Journal.open(files, SITE).append(lambda latest, rnd=rnd: round_record("x", rnd))
    return files


def refused(files: LedgerFiles, problem: str) -> None:
    with pytest.raises(LedgerError, match="site 'hospital-1': its privacy ledger cannot be trusted") as err:
        Journal.open(files, SITE)
    assert problem in str(err.value) and "ledger recover" in str(err.value)
    assert str(files.journal.parent) not in str(err.value)  # the refusal goes to the server: no paths


def test_entries_are_chained_and_the_key_and_anchor_live_apart(tmp_path):
    files = files_with(tmp_path, 3)
    entries = [json.loads(line) for line in files.journal.read_text().splitlines()]
    assert [e["seq"] for e in entries] == [1, 2, 3] and entries[0]["prev"] == ""
    assert all(b["prev"] == a["mac"] for a, b in zip(entries, entries[1:], strict=False))
    assert json.loads(files.anchor.read_text())["seq"] == 3
    assert files.key.stat().st_mode & 0o777 == 0o600
    assert files.journal.parent not in (files.key.parent, files.anchor.parent)
    assert not verify(files, SITE).problem and len(Journal.open(files, SITE).rounds()) == 3


def test_a_deleted_journal_is_refused(tmp_path):
    files = files_with(tmp_path, 2)
    files.journal.unlink()
    refused(files, "its journal is missing")


def test_a_journal_restored_from_an_older_copy_is_refused(tmp_path):
    files = files_with(tmp_path, 2)
    shutil.copy(files.journal, tmp_path / "backup")
    Journal.open(files, SITE).append(lambda latest: round_record("x", 3))
    shutil.copy(tmp_path / "backup", files.journal)
    refused(files, "an older copy was restored")


def test_a_journal_edited_by_one_byte_is_refused(tmp_path):
    files = files_with(tmp_path, 3)
    raw = bytearray(files.journal.read_bytes())
    raw[raw.index(b'"noise-multiplier":1.0') + len('"noise-multiplier":')] = ord("9")  # 1.0 -> 9.0: less ε
    files.journal.write_bytes(bytes(raw))
    refused(files, "entry 1 of its journal fails its MAC chain")


def test_a_deleted_anchor_or_key_is_refused(tmp_path):
    files = files_with(tmp_path, 1)
    files.anchor.unlink()
    refused(files, "its anchor is missing")
    files.key.unlink()
    refused(files, "secret key is missing")


def test_two_processes_appending_at_once_lose_no_entry(tmp_path):
    go = tmp_path / "go"
    writers = [spawn(tmp_path / "ledgers", study, 15, go, RACE) for study in ("a", "b")]
    time.sleep(0.5)  # both interpreters up and waiting
    go.touch()
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    rounds = Journal.open(LedgerFiles.at(tmp_path / "ledgers", SITE), SITE).rounds()
    assert sorted((r["study"], r["round"]) for r in rounds) == [(s, n) for s in ("a", "b") for n in range(15)]


@pytest.mark.parametrize(("stage", "setup", "kept"), [("mid-line", TORN, 1), ("before fsync", UNSYNCED, 2)])
def test_killed_during_a_journal_write_the_journal_opens_and_verifies(tmp_path, caplog, stage, setup, kept):
    files, stuck = LedgerFiles.at(tmp_path / "ledgers", SITE), tmp_path / "stuck"
    writer = spawn(tmp_path / "ledgers", "x", 2, stuck, setup)
    deadline = time.monotonic() + 30
    while not stuck.exists() and writer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=10)
    assert stuck.exists(), f"the writer never reached the {stage} point"
    with caplog.at_level("INFO", logger="medfed.site"):
        opened = Journal.open(files, SITE)
    assert len(opened.entries) == kept
    assert "partial line" in caplog.text if kept == 1 else "anchor moved forward" in caplog.text
    opened.append(lambda latest: round_record("x", 9))
    assert not verify(files, SITE).problem and len(Journal.open(files, SITE).entries) == kept + 1


def test_recovery_is_explicit_logged_and_recorded_in_the_journal(tmp_path, caplog):
    files = files_with(tmp_path, 2)
    shutil.copy(files.journal, tmp_path / "backup")
    Journal.open(files, SITE).append(lambda latest: round_record("x", 3))
    shutil.copy(tmp_path / "backup", files.journal)
    with pytest.raises(LedgerError, match="needs a reason"):
        recover(files, SITE, " ")
    with caplog.at_level("WARNING", logger="medfed.site"):
        said = recover(files, SITE, "disk replaced, journal restored from last night's backup")
    assert "older copy was restored" in said and "recovered by the operator" in caplog.text
    last = Journal.open(files, SITE).entries[-1]
    assert last["kind"] == "recovery" and last["reason"].startswith("disk replaced")
    assert len(Journal.open(files, SITE).rounds()) == 2  # what the journal still holds keeps counting
    assert list(files.journal.parent.glob("*.before-recovery-*"))  # the old file is kept, never deleted
    assert "nothing to recover" in recover(files, SITE, "again")


def test_a_lock_held_too_long_is_a_clear_refusal(tmp_path, monkeypatch):
    files = files_with(tmp_path, 1)
    monkeypatch.setattr(journal, "LOCK_WAIT_S", 0.1)
    with files.lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(LedgerError, match="site 'hospital-1': another process has held its privacy ledger"):
            Journal.open(files, SITE).append(lambda latest: round_record("x", 2))
    assert len(Journal.open(files, SITE).entries) == 1
