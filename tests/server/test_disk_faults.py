"""A full disk or a read-only output folder: the study stops `failed`, naming the folder, what was saved is intact,
and it resumes once the folder can be written again.

Tests run as root, for whom chmod does not block writes, so every fault is injected at the write itself: the
study's write path raises OSError with ENOSPC (full disk), EROFS (read-only mount) or EACCES (no permission).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os

import pytest
from safetensors.numpy import load_file

import server.outputs
from server.loop import run_study
from server.outputs import StudyOutputs
from tests.conftest import with_federation
from tests.localgrid import LocalGrid

FAULTS = [
    (errno.ENOSPC, "No space left on device"),
    (errno.EROFS, "Read-only file system"),
    (errno.EACCES, "Permission denied"),
]


def break_writes(monkeypatch, code: int, when=lambda name: True) -> list[str]:
    """Writes whose file name satisfies `when` fail with `code` after writing part of the temp file; return those
    names as they are tried."""
    real = server.outputs.atomic_write
    tried = []

    def failing(path, write, mode=0o644):
        if not when(path.name):
            return real(path, write, mode)
        tried.append(path.name)

        def half_then_fail(tmp):
            tmp.write_bytes(b"partial")
            raise OSError(code, os.strerror(code), str(tmp))

        return real(path, half_then_fail, mode)

    monkeypatch.setattr(server.outputs, "atomic_write", failing)
    return tried


@pytest.mark.parametrize(("code", "reason"), FAULTS)
def test_a_failed_checkpoint_stops_the_study_failed_and_resume_works_after(
    code, reason, study, demo_sites, tmp_path, monkeypatch, caplog
):
    study = dataclasses.replace(
        with_federation(study, rounds=3), train=dataclasses.replace(study.train, local_epochs=1)
    )
    folder = tmp_path / "run"
    with monkeypatch.context() as patch:
        tried = break_writes(patch, code, when=lambda name: name == "round-002.safetensors")
        with caplog.at_level(logging.ERROR, logger="medfed"):
            _, history = run_study(LocalGrid(demo_sites), study, StudyOutputs(folder))
    expected = f"failed: cannot write checkpoints/round-002.safetensors in the output folder {folder} ({reason})"
    assert tried == ["round-002.safetensors"]
    assert history.status.startswith(expected)
    assert json.loads((folder / "history.json").read_text())["status"] == history.status  # it still fit
    assert expected[len("failed: ") :] in caplog.text
    # What was saved is intact: round 1's checkpoint and state, and no temp file left behind.
    state = json.loads((folder / "state.json").read_text())
    assert state["round"] == 1 and state["history"]["status"] == "running"
    assert load_file(str(folder / state["tensors"]))
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == [
        "round-001.safetensors",
        "state-001.safetensors",
    ]
    assert not [p for p in folder.rglob(".*")]
    assert not (folder / "model.safetensors").exists()
    # Space is back: the same study resumes after round 1 and completes.
    _, resumed = run_study(LocalGrid(demo_sites), study, StudyOutputs(folder))
    assert resumed.status == "completed"
    assert [e for e in resumed.events if e["event"] == "resumed"] == [
        {"round": 1, "site": "-", "event": "resumed", "reason": "after round 1"}
    ]
    assert sorted(t["round"] for t in resumed.timings) == [1, 2, 3]  # round 2 once, not twice


@pytest.mark.parametrize(("code", "reason"), FAULTS)
def test_a_folder_that_takes_no_write_at_all_fails_in_the_log(
    code, reason, study, demo_sites, tmp_path, monkeypatch, caplog
):
    folder = tmp_path / "run"
    break_writes(monkeypatch, code)
    with caplog.at_level(logging.ERROR, logger="medfed"):
        _, history = run_study(LocalGrid(demo_sites), study, StudyOutputs(folder))
    problem = f"cannot write study.json in the output folder {folder} ({reason})"
    assert history.status.startswith(f"failed: {problem}")
    assert problem in caplog.text
    assert "its status could not be recorded in history.json either: cannot write history.json" in caplog.text
    assert not folder.exists() or not any(folder.rglob("*"))
