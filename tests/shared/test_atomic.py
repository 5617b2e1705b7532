"""Atomic writes: the new file is fsync'd before the rename and the folder after it; a failure keeps the old file."""

from __future__ import annotations

import errno
import os
import stat

import pytest

import shared.atomic
from shared.atomic import atomic_write, atomic_write_bytes, atomic_write_text


def test_the_file_is_synced_before_the_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(
        shared.atomic.os,
        "fsync",
        lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd),
    )
    monkeypatch.setattr(
        shared.atomic.os, "replace", lambda a, b: events.append(("replace", str(b))) or real_replace(a, b)
    )
    target = tmp_path / "state.json"
    atomic_write_text(target, "{}")
    assert [kind for kind, _ in events] == ["fsync", "replace", "fsync"]
    assert events[0][1].startswith(str(tmp_path / ".state.")) and events[1][1] == str(target)
    assert events[2][1] == str(tmp_path)
    assert target.read_text() == "{}" and os.listdir(tmp_path) == ["state.json"]


def test_a_write_that_fails_midway_keeps_the_old_file_and_removes_its_temp(tmp_path):
    target = atomic_write_bytes(tmp_path / "round-001.safetensors", b"old")

    def full_disk(tmp):
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, full_disk)
    assert target.read_bytes() == b"old" and os.listdir(tmp_path) == ["round-001.safetensors"]


def test_a_private_file_is_never_readable_by_others(tmp_path):
    seen = []
    atomic_write(
        tmp_path / "site.key", lambda tmp: seen.append(stat.S_IMODE(tmp.stat().st_mode)) or tmp.write_bytes(b"k"), 0o600
    )
    assert seen == [0o600] and stat.S_IMODE((tmp_path / "site.key").stat().st_mode) == 0o600
