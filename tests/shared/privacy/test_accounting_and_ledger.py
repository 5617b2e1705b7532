"""Accounting and the site's ledger: matches Opacus, survives restarts, refuses over budget, never resets."""

from __future__ import annotations

import itertools
import json
import warnings

import pytest
from opacus.accountants import PRVAccountant, RDPAccountant

from shared.config import StudyConfig
from shared.errors import ConfigError, PolicyError
from shared.privacy.accounting import BudgetError, epsilon, merge, plan_noise
from shared.privacy.caps import PrivacyCaps
from shared.privacy.journal import LedgerFiles
from tests.shared.privacy.rounds import SITE, dp_study, open_site, run_round


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_merged_history_gives_opacus_epsilon(accountant):
    history = [(1.1, 0.05, 40), (0.9, 0.1, 20), (1.1, 0.05, 40), (0.9, 0.1, 20)]
    reference = (PRVAccountant if accountant == "prv" else RDPAccountant)()
    reference.history = history  # unmerged, as a single long-lived accountant would hold it
    assert merge(history) == [(1.1, 0.05, 80), (0.9, 0.1, 40)]
    assert epsilon(history, 1e-5, accountant) == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-6)


@pytest.mark.parametrize("target", [2.0, 8.0, 20.0])
def test_plan_spends_the_whole_budget_and_no_more(target):
    """A plan resolves ε to 1 % of its target (its cost then alike for every target), each round at Opacus's
    default error: what the rounds spend stays within the target, by about that 1 %."""
    noise = plan_noise(target, 1e-5, 0.05, 2000, "prv")
    spent = epsilon([(noise, 0.05, 2000)], 1e-5, "prv")
    assert 0.98 * target < spent <= target


def test_ledger_survives_restarts_and_matches_an_uninterrupted_accountant(tmp_path):
    study = dp_study()
    restarted = [run_round(study, tmp_path, rnd) for rnd in range(1, 5)]
    site = open_site(study, tmp_path / "other")
    uninterrupted = PRVAccountant()
    expected = []
    for _ in range(4):
        for _ in range(site.steps_per_round):
            uninterrupted.step(noise_multiplier=site.noise, sample_rate=site.sample_rate)
        expected.append(uninterrupted.get_epsilon(delta=1e-5))
    assert restarted == pytest.approx(expected, rel=1e-9)
    assert all(a < b for a, b in itertools.pairwise(restarted))  # monotone
    assert restarted[-1] <= 2.0
    lines = LedgerFiles.at(tmp_path, SITE).journal.read_text().splitlines()
    saved = [json.loads(line) for line in lines]
    assert [r["round"] for r in saved] == [1, 2, 3, 4] and all("time" in r for r in saved)
    assert {r["study"] for r in saved} == {study.name} and [r["epsilon"] for r in saved] == restarted


def test_refuses_the_round_that_would_exceed_the_budget(tmp_path):
    study = dp_study()
    for rnd in range(1, 5):
        run_round(study, tmp_path, rnd)
    with pytest.raises(BudgetError, match=r"site 'hospital-1': privacy budget exhausted: ε spent 1\.9"):
        open_site(study, tmp_path).check_round()


def test_budget_too_small_for_one_round_is_said_before_training(tmp_path):
    study = dp_study(epsilon=0.05, noise_multiplier=0.3)
    with pytest.raises(BudgetError, match="too small for even one round"):
        open_site(study, tmp_path).check_round()
    files = LedgerFiles.at(tmp_path, SITE)
    assert not files.journal.exists() and not files.key.exists() and not files.anchor.exists()  # nothing spent


def test_study_cannot_raise_the_site_cap(tmp_path):
    with pytest.raises(PolicyError, match=r"site 'hospital-1'.*ε = 8.0.*cap of 3.0"):
        open_site(dp_study(epsilon=8.0), tmp_path, PrivacyCaps(max_epsilon=3.0))


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


@pytest.mark.parametrize(
    ("history", "excess"),
    [
        ([(1.0, 1e-6, 10**9)], "1,000,000,000 steps"),  # a billion steps once ran Opacus's PRV out of memory
        ([(1.0, 0.5, 30_000)], "15,000 passes"),  # 30,000 steps at rate 0.5: 3 GB to plan 100,000 of them
        ([(1.0 + i / 10, 0.01, 10) for i in range(5)], "5 distinct noise and sampling settings"),
    ],
)
def test_prv_work_beyond_its_bounds_is_refused_at_once_and_rdp_accounts_it(history, excess):
    with pytest.raises(BudgetError, match=f"asks for {excess}.*privacy.accountant = 'rdp' accounts any number"):
        epsilon(history, 1e-5, "prv")
    assert 0 < epsilon(history, 1e-5, "rdp") < float("inf")


def test_an_epsilon_above_what_prv_resolves_is_stated_by_rdp_at_once_and_refused_by_any_budget(tmp_path):
    """A fixed noise of 0.05 over 10,000 steps: PRV once asked a site for 816 GiB to state its ε."""
    history = [(0.05, 0.01, 10_000)]
    assert epsilon(history, 1e-5, "prv") == epsilon(history, 1e-5, "rdp") > 1e6
    assert epsilon([(1.0, 0.05, 2000)], 1e-5, "prv") < epsilon([(1.0, 0.05, 2000)], 1e-5, "rdp")  # PRV below it
    with warnings.catch_warnings():  # the bound's RDP orders once warned on a data scientist's terminal every round
        warnings.simplefilter("error")
        epsilon([(4.0, 0.01, 13)], 1e-5, "prv")
    study = dp_study(epsilon=20.0, noise_multiplier=0.05)
    with pytest.raises(BudgetError, match=r"too small for even one round\): ε spent 0.000, this round would reach"):
        open_site(study, tmp_path).check_round()


def test_a_study_asking_prv_for_more_than_it_resolves_in_bounded_memory_is_refused_by_field():
    with pytest.raises(ConfigError, match=r"'prv' resolves ε up to 20 .* privacy.epsilon is 50: use 'rdp'") as err:
        StudyConfig.from_dict({"privacy": {"mode": "local", "epsilon": 50.0}})
    assert err.value.field == "privacy.accountant"
    StudyConfig.from_dict({"privacy": {"mode": "local", "epsilon": 50.0, "accountant": "rdp"}})


def test_a_study_whose_rounds_and_epochs_prv_cannot_account_is_refused_by_field():
    endless = {"privacy": {"mode": "local"}, "federation": {"rounds": 5_000}, "train": {"local-epochs": 3}}
    with pytest.raises(ConfigError, match=r"rounds x train.local-epochs = 15,000 passes") as err:
        StudyConfig.from_dict(endless)
    assert err.value.field == "privacy.accountant"
    StudyConfig.from_dict({**endless, "privacy": {"mode": "local", "accountant": "rdp"}})
    StudyConfig.from_dict({**endless, "privacy": {"mode": "off"}})
