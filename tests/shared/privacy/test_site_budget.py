"""The budget belongs to the site's patients: renamed and second studies, δ, and the lifetime cap over all studies."""

from __future__ import annotations

import dataclasses
import json

import pytest
from opacus.accountants import RDPAccountant

from shared.errors import PolicyError
from shared.privacy.accounting import BudgetError, epsilon
from shared.privacy.budget import history, lifetime_accountant, lifetime_spent
from shared.privacy.caps import PrivacyCaps
from shared.privacy.journal import LedgerError, LedgerFiles
from shared.privacy.site import check_lifetime, planned_round
from tests.shared.privacy.rounds import N_TRAIN, SITE, dp_study, open_site, run_round, train

DELTA = 1e-5
RATE, STEPS = 0.5, 2  # dp_study(quick=True): 2 batches of 60 rows, one local epoch


def quick(name: str, noise: float = 1.0, budget: float = 10.0, **privacy):
    """A study spending a known amount per round: RDP at δ = 1e-5 with a fixed noise multiplier."""
    return dp_study(name, quick=True, accountant="rdp", noise_multiplier=noise, epsilon=budget, **privacy)


def spent(*rounds: tuple[float, int]) -> float:
    """RDP ε at δ = 1e-5 of rounds given as (noise, count)."""
    return epsilon([(noise, RATE, STEPS * count) for noise, count in rounds], DELTA, "rdp")


def recorded(folder) -> list[dict]:
    return [json.loads(line) for line in LedgerFiles.at(folder, SITE).journal.read_text().splitlines()]


@pytest.mark.parametrize("max_delta", [DELTA, 0.0], ids=["delta-cap-of-the-study", "default-delta-cap"])
def test_a_renamed_study_spends_from_the_same_lifetime_budget(tmp_path, max_delta):
    """With the default δ cap (1/(10 n), far above the study's δ) too: the lifetime ε is stated at the smallest δ a
    study used, so the renamed study starts with nothing left."""
    budget = spent((1.0, 2)) + 1e-6
    caps = PrivacyCaps(max_epsilon=budget, max_delta=max_delta)  # lifetime cap by default: max-epsilon
    for rnd in (1, 2):
        run_round(quick("x", budget=budget), tmp_path, rnd, caps)
    with pytest.raises(BudgetError, match="site 'hospital-1': privacy budget exhausted"):
        open_site(quick("x", budget=budget), tmp_path, caps).check_round()
    with pytest.raises(BudgetError, match="site 'hospital-1': lifetime privacy budget exhausted"):
        open_site(quick("x-v2", budget=budget), tmp_path, caps).check_round()


def test_a_second_study_spends_from_the_same_lifetime_budget(tmp_path):
    lifetime = spent((1.0, 1), (1.5, 1)) + 1e-6
    caps = PrivacyCaps(max_epsilon=10.0, max_delta=DELTA, lifetime_epsilon=lifetime)
    run_round(quick("first", noise=1.0), tmp_path, 1, caps)
    run_round(quick("second", noise=1.5), tmp_path, 1, caps)
    with pytest.raises(BudgetError, match=r"lifetime privacy budget exhausted.*lifetime cap of"):
        open_site(quick("second", noise=1.5), tmp_path, caps).check_round()
    with pytest.raises(BudgetError, match="lifetime privacy budget exhausted"):
        open_site(quick("third", noise=3.0), tmp_path, caps).check_round()
    # The lifetime ε is Opacus's RDP accountant over the union of both studies' histories.
    union = RDPAccountant()
    union.history = [(r["noise-multiplier"], r["sample-rate"], r["steps"]) for r in recorded(tmp_path)]
    assert union.get_epsilon(delta=DELTA) == pytest.approx(lifetime, abs=1e-5)
    assert [r["study"] for r in recorded(tmp_path)] == ["first", "second"]


@pytest.mark.parametrize(
    ("delta", "caps", "cap"),
    [
        (0.5, PrivacyCaps(), "0.000833"),  # the default: 1/(10 n) of the site's 120 training rows
        (1e-3, PrivacyCaps(max_epsilon=10.0), "0.000833"),
        (1e-5, PrivacyCaps(max_delta=1e-6), "1e-06"),
    ],
)
def test_delta_above_the_site_cap_is_refused_before_anything_is_written(tmp_path, delta, caps, cap):
    with pytest.raises(PolicyError, match=rf"site 'hospital-1': the study asks for δ = {delta:g}, .*cap of {cap}"):
        open_site(quick("greedy", delta=delta), tmp_path, caps)
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_a_study_cannot_change_its_delta_midway(tmp_path):
    run_round(quick("x"), tmp_path, 1)
    with pytest.raises(PolicyError, match="study 'x' has spent at δ = 1e-05.*cannot change"):
        open_site(quick("x", delta=1e-4), tmp_path).check_round()


def test_a_round_that_no_longer_fits_at_commit_is_not_recorded(tmp_path):
    """Two processes both passed the check; the second commit finds the lifetime spent under the lock."""
    caps = PrivacyCaps(max_delta=DELTA, lifetime_epsilon=spent((1.0, 1)) + 1e-6)
    first, second = open_site(quick("a"), tmp_path, caps), open_site(quick("b"), tmp_path, caps)
    first.check_round(), second.check_round()
    train(first, quick("a"), 1)
    train(second, quick("b"), 1)
    first.commit(1)
    with pytest.raises(BudgetError, match="lifetime privacy budget exhausted"):
        second.commit(1)
    assert [r["study"] for r in recorded(tmp_path)] == ["a"]


def test_a_deleted_journal_stops_training_and_the_refusal_names_no_file(tmp_path):
    run_round(quick("x"), tmp_path, 1)
    LedgerFiles.at(tmp_path, SITE).journal.unlink()
    with pytest.raises(LedgerError, match="site 'hospital-1': its privacy ledger cannot be trusted") as err:
        open_site(quick("renamed"), tmp_path)
    assert str(tmp_path) not in str(err.value) and "journal is missing" in str(err.value)


def test_check_lifetime_names_the_round_the_agent_then_refuses_and_writes_nothing(tmp_path):
    """What `medfed-site check --study` says before a study: the lifetime cap leaves room for 3 rounds in all."""
    caps = PrivacyCaps(max_epsilon=10.0, max_delta=DELTA, lifetime_epsilon=spent((1.0, 3)) + 1e-6)
    run_round(quick("first"), tmp_path, 1, caps)
    files = LedgerFiles.at(tmp_path, SITE)
    before = files.journal.read_bytes()
    second = quick("second")  # 4 rounds planned
    with pytest.raises(BudgetError, match="refuse it from its round 3 on"):
        check_lifetime(second, SITE, files, caps, N_TRAIN)
    assert files.journal.read_bytes() == before
    for rnd in (1, 2):
        run_round(second, tmp_path, rnd, caps)
    with pytest.raises(BudgetError, match="refuse it from its round 3 on"):  # resumed: 2 rounds done, 2 left
        check_lifetime(second, SITE, files, caps, N_TRAIN)
    with pytest.raises(BudgetError, match="lifetime privacy budget exhausted"):
        open_site(second, tmp_path, caps).check_round()  # the agent's own check, at round 3
    check_lifetime(quick("first"), SITE, files, PrivacyCaps(max_epsilon=100.0, max_delta=DELTA), N_TRAIN)  # room
    endless = dataclasses.replace(second, federation=dataclasses.replace(second.federation, rounds=10**9))
    with pytest.raises(BudgetError, match="refuse it from its round 3 on"):  # a coordinator's billion rounds: at once
        check_lifetime(endless, SITE, files, caps, N_TRAIN)


def test_a_sites_only_study_at_its_cap_is_never_refused_by_the_lifetime_cap(tmp_path):
    """The lifetime once composed by RDP always: a PRV study planned to spend exactly the site's max-epsilon read
    above it by RDP, so the site refused it at its last rounds (round 8 of 10 at ε = 8 in medfed-sim)."""
    study = dp_study("only", rounds=3, quick=True)  # ε = 2, PRV: the study default
    caps = PrivacyCaps(max_epsilon=2.0, max_delta=DELTA)  # lifetime cap by default: max-epsilon
    files = LedgerFiles.at(tmp_path, SITE)
    check_lifetime(study, SITE, files, caps, N_TRAIN)
    for rnd in (1, 2, 3):
        assert run_round(study, tmp_path, rnd, caps) <= 2.0
    rounds = [r for r in recorded(tmp_path) if r["kind"] == "round"]
    assert lifetime_accountant(rounds) == "prv"
    assert lifetime_spent(rounds, DELTA) == epsilon(history(rounds), DELTA, "prv")  # the study's own composition
    assert lifetime_accountant(rounds, accountant="rdp") == "rdp"  # a study of the other accountant: RDP over all


def test_the_lifetime_of_studies_with_different_accountants_is_composed_by_rdp(tmp_path):
    caps = PrivacyCaps(max_epsilon=10.0, max_delta=DELTA)
    run_round(quick("by-rdp"), tmp_path, 1, caps)
    run_round(dp_study("by-prv", quick=True, noise_multiplier=1.0, epsilon=10.0), tmp_path, 1, caps)
    rounds = [r for r in recorded(tmp_path) if r["kind"] == "round"]
    assert [r["accountant"] for r in rounds] == ["rdp", "prv"]
    assert lifetime_spent(rounds, DELTA) == pytest.approx(spent((1.0, 2)), abs=1e-9)


def test_a_study_planning_more_steps_than_prv_composes_is_refused_before_any_planning():
    """At a site of 10 million rows in batches of 60, 4 rounds of one epoch are 666,668 DP-SGD steps."""
    study = dp_study("large", quick=True)
    with pytest.raises(BudgetError, match=r"site 'hospital-1': .* asks for 666,668 steps: privacy.accountant = 'rdp'"):
        planned_round(study, SITE, 10**7)
    noise, rate, steps = planned_round(
        dataclasses.replace(study, privacy=dataclasses.replace(study.privacy, accountant="rdp")), SITE, 10**7
    )
    assert noise > 0 and steps == 166_667


def test_a_lifetime_beyond_what_prv_composes_is_composed_by_rdp():
    """Every study used PRV, but together they compose more than PRV can in bounded time and memory."""

    def rounds(*entries: tuple[float, float, int]) -> list[dict]:
        return [
            {"study": f"s{i}", "accountant": "prv", "noise-multiplier": n, "sample-rate": q, "steps": k}
            for i, (n, q, k) in enumerate(entries)
        ]

    within = rounds((1.0, 0.01, 1_000), (1.2, 0.01, 1_000))
    assert lifetime_accountant(within) == "prv"
    assert lifetime_accountant(within, ((1.0, 0.01, 200_000),), "prv") == "rdp"  # a study about to spend
    many = rounds(*((1.0 + i / 10, 0.01, 100) for i in range(5)))
    assert lifetime_accountant(many) == "rdp"
    assert lifetime_spent(many, DELTA) == epsilon(history(many), DELTA, "rdp")
