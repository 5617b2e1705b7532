"""Accounting and the site's ledger: matches Opacus, survives restarts, refuses over budget, never resets."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch.utils.data import TensorDataset

from shared.config import PrivacyConfig, StudyConfig
from shared.errors import ConfigError, PolicyError
from shared.privacy.accounting import BudgetError, epsilon, merge, plan_noise
from shared.privacy.ledger import LedgerError, PrivacyLedger, ledger_path
from shared.privacy.site import SitePrivacy
from shared.tasks import build_model
from shared.tasks.tabular.demo import demo_study
from shared.training import make_loader, make_optimizer, train_epochs

N_TRAIN = 120


def dp_study(**privacy) -> StudyConfig:
    base = demo_study()
    return dataclasses.replace(
        base,
        privacy=PrivacyConfig(**{"mode": "local", "epsilon": 2.0, **privacy}),
        federation=dataclasses.replace(base.federation, rounds=4),
    )


def run_round(study, folder, rnd, cap=float("inf")) -> float:
    """One real DP-SGD round as a site runs it, in a fresh object (as a restarted process would)."""
    site = SitePrivacy(study, "hospital-1", folder, cap, N_TRAIN)
    site.check_round()
    torch.manual_seed(rnd)
    data = TensorDataset(torch.randn(N_TRAIN, 30), torch.randint(0, 2, (N_TRAIN,)))
    model = build_model(study)
    model, optimizer, loader, loss = site.make_private(
        model,
        make_optimizer(model, study.train),
        make_loader(data, study.train.batch_size, rnd),
        torch.nn.CrossEntropyLoss(),
    )
    train_epochs(
        model,
        loader,
        loss,
        optimizer,
        study.train.local_epochs,
        torch.device("cpu"),
        empty_batch_step=site.empty_batch_step(),
    )
    return site.commit(rnd)


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_merged_history_gives_opacus_epsilon(accountant):
    history = [(1.1, 0.05, 40), (0.9, 0.1, 20), (1.1, 0.05, 40), (0.9, 0.1, 20)]
    reference = (PRVAccountant if accountant == "prv" else RDPAccountant)()
    reference.history = history  # unmerged, as a single long-lived accountant would hold it
    assert merge(history) == [(1.1, 0.05, 80), (0.9, 0.1, 40)]
    assert epsilon(history, 1e-5, accountant) == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-6)


def test_plan_spends_the_whole_budget_and_no_more():
    noise = plan_noise(2.0, 1e-5, 0.1, 200, "prv")
    spent = epsilon([(noise, 0.1, 200)], 1e-5, "prv")
    assert 1.9 < spent <= 2.0


def test_ledger_survives_restarts_and_matches_an_uninterrupted_accountant(tmp_path):
    study = dp_study()
    restarted = [run_round(study, tmp_path, rnd) for rnd in range(1, 5)]
    site = SitePrivacy(study, "hospital-1", tmp_path / "other", float("inf"), N_TRAIN)
    uninterrupted = PRVAccountant()
    expected = []
    for _ in range(4):
        for _ in range(site.steps_per_round):
            uninterrupted.step(noise_multiplier=site.noise, sample_rate=site.sample_rate)
        expected.append(uninterrupted.get_epsilon(delta=1e-5))
    assert restarted == pytest.approx(expected, rel=1e-9)
    assert all(a < b for a, b in itertools.pairwise(restarted))  # monotone
    assert restarted[-1] <= 2.0
    saved = json.loads(ledger_path(tmp_path, "hospital-1", study.name).read_text())
    assert [r["round"] for r in saved["rounds"]] == [1, 2, 3, 4] and all("time" in r for r in saved["rounds"])
    assert len(saved["history"]) == 1  # merged: the accountant's cost does not grow with rounds


def test_refuses_the_round_that_would_exceed_the_budget(tmp_path):
    study = dp_study()
    for rnd in range(1, 5):
        run_round(study, tmp_path, rnd)
    with pytest.raises(BudgetError, match=r"site 'hospital-1': privacy budget exhausted: ε spent 1\.9"):
        SitePrivacy(study, "hospital-1", tmp_path, float("inf"), N_TRAIN).check_round()


def test_budget_too_small_for_one_round_is_said_before_training(tmp_path):
    study = dp_study(epsilon=0.05, noise_multiplier=0.3)
    with pytest.raises(BudgetError, match="too small for even one round"):
        SitePrivacy(study, "hospital-1", tmp_path, float("inf"), N_TRAIN).check_round()
    assert not list(tmp_path.iterdir())  # nothing spent, nothing written


def test_study_cannot_raise_the_site_cap(tmp_path):
    with pytest.raises(PolicyError, match=r"site 'hospital-1'.*ε = 8.0.*cap of 3.0"):
        SitePrivacy(dp_study(epsilon=8.0), "hospital-1", tmp_path, 3.0, N_TRAIN)


def write_ledger(tmp_path) -> tuple[StudyConfig, object]:
    study = dp_study()
    run_round(study, tmp_path, 1)
    return study, ledger_path(tmp_path, "hospital-1", study.name)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda text: text[: len(text) // 2], "unreadable or not JSON"),
        (lambda text: json.dumps({"history": []}), "not a medfed privacy ledger"),
        (lambda text: text.replace('"round": 1', '"round": 7'), "checksum mismatch"),
    ],
)
def test_corrupt_or_foreign_ledger_is_refused_and_kept(tmp_path, damage, message):
    study, path = write_ledger(tmp_path)
    path.write_text(damage(path.read_text()))
    before = path.read_bytes()
    with pytest.raises(LedgerError, match=message):
        SitePrivacy(study, "hospital-1", tmp_path, float("inf"), N_TRAIN)
    assert path.read_bytes() == before


def test_ledger_of_another_study_is_refused(tmp_path):
    study, path = write_ledger(tmp_path)
    other = dataclasses.replace(study, name="another-study")
    path.rename(ledger_path(tmp_path, "hospital-1", other.name))
    with pytest.raises(LedgerError, match="belongs to study 'breast-cancer-demo'"):
        SitePrivacy(other, "hospital-1", tmp_path, float("inf"), N_TRAIN)
    with pytest.raises(LedgerError, match="belongs to accountant"):
        PrivacyLedger.open(
            ledger_path(tmp_path, "hospital-1", other.name), "hospital-1", "breast-cancer-demo", "rdp", 1e-5
        )


@pytest.mark.parametrize(
    ("privacy", "field"),
    [
        ({"epsilon": 0}, "privacy.epsilon"),
        ({"epsilon": -1}, "privacy.epsilon"),
        ({"delta": 0}, "privacy.delta"),
        ({"delta": 1.0}, "privacy.delta"),
        ({"clip-norm": 0}, "privacy.clip-norm"),
        ({"mode": "maybe"}, "privacy.mode"),
    ],
)
def test_bad_privacy_settings_name_the_field(privacy, field):
    with pytest.raises(ConfigError) as err:
        StudyConfig.from_dict({"privacy": privacy})
    assert err.value.field == field
