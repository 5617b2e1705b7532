"""`medfed-site ledger show|verify|recover`: spend per study and over the lifetime, tampering, explicit recovery."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from client.cli import cli
from shared.privacy.journal import Journal, LedgerFiles
from tests.shared.privacy.records import SITE, round_record


def ledger(*args: str, folder) -> object:
    return CliRunner().invoke(cli, ["ledger", *args, "--ledger-dir", str(folder), "--site", SITE])


def test_show_verify_and_recover_a_restored_journal(tmp_path):
    folder = tmp_path / "ledgers"
    files = LedgerFiles.at(folder, SITE)
    for study, rnd in (("x", 1), ("x", 2), ("x-v2", 1)):
        Journal.open(files, SITE).append(lambda latest, study=study, rnd=rnd: round_record(study, rnd))
    shown = ledger("show", folder=folder)
    assert shown.exit_code == 0, shown.output
    assert "x-v2" in shown.output and "lifetime, all studies (RDP): ε" in shown.output
    assert "verifies" in shown.output
    assert ledger("verify", folder=folder).exit_code == 0

    shutil.copy(files.journal, tmp_path / "backup")
    Journal.open(files, SITE).append(lambda latest: round_record("x-v2", 2))
    shutil.copy(tmp_path / "backup", files.journal)  # an older copy comes back
    broken = ledger("verify", folder=folder)
    assert broken.exit_code == 1 and "does not verify" in broken.output and "older copy" in broken.output

    assert ledger("recover", folder=folder).exit_code == 2  # --reason is required
    recovered = ledger("recover", "--reason", "restored after a disk failure", folder=folder)
    assert recovered.exit_code == 0 and "re-anchored" in recovered.output
    assert ledger("verify", folder=folder).exit_code == 0
    assert Journal.open(files, SITE).entries[-1]["reason"] == "restored after a disk failure"


def test_a_site_that_never_trained_shows_an_empty_ledger(tmp_path):
    shown = ledger("show", folder=tmp_path / "ledgers")
    assert shown.exit_code == 0 and "verifies: 0 entries" in shown.output
