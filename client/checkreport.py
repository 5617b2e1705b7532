"""What `medfed-site check` reports: the site's data, and what a study would cost the site if it admitted it.

Everything here is read and printed at the site; nothing is sent.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from client.admission import admit, admit_model
from client.approvals import approval_of
from client.site import SiteConfig, load_site_data, preflight
from client.sitefile import load_site_file
from shared.config import StudyConfig, load_study
from shared.errors import ConfigError


def check_report(
    config: Path | None, data: Path | None, study: Path | None, site: str, modalities: dict, min_cell: int
) -> tuple[dict, str, list[str]]:
    """The data report, the site's name and, for a site checking a study against its site.toml, what admitting it
    would cost the site (memory, ε, its lifetime ε), whether it is approved, and the study's notes."""
    if modalities and (config is not None or study is not None):
        raise ConfigError(
            next(iter(modalities)),
            "describes --data without --study or --config (a study or site.toml names the columns itself)",
            source="medfed-site check",
        )
    study_config = load_study(study) if study else None
    if config is not None:
        site_file = load_site_file(config)
        if study_config is None:
            return preflight(site_file), site_file.name, []
        site_config = SiteConfig.from_site_file(site_file)
        # the site's policy and caps, as its agent applies them; whether it is approved is stated, not required here
        trains = study_config.federation.rounds > 0  # an evaluation-only study is admitted as evaluations are
        admit(study_config, dataclasses.replace(site_config, approvals=None), train=trains)
        mib = admit_model(study_config, site_config)
        data = load_site_data(site_config, study_config)
        admitted = [
            f"memory: training the study's model on this site's data would hold about {mib:,.1f} MiB (torch's own "
            f"runtime aside), of its policy.max-training-mib = {site_file.policy.max_training_mib:g}"
        ]
        from shared.tasks import get_task

        notes = [f"note: {n}" for n in get_task(study_config.task).study_notes(study_config)]  # e.g. what ε leaves out
        # after loading: the δ cap and each round's noise depend on the train split's size
        outlook = _privacy_outlook(study_config, site_config, len(data.train))
        approval = _approval(study_config, site_config, config)
        return data.report, site_file.name, admitted + _initial(study_config) + outlook + approval + notes
    if data is None:
        raise ConfigError(
            "config",
            "give --config site.toml, or --data (and --study to check it against one)",
            source="medfed-site check",
        )
    if study_config is None:
        from client.describe import describe_data

        return describe_data(data, site, modalities, min_cell), site, []
    admit_model(study_config, SiteConfig(site, data))
    return load_site_data(SiteConfig(site, data), study_config).report, site, []


def _initial(study: StudyConfig) -> list[str]:
    """The model the study starts from, or only evaluates here, by its pin: what an approval of the study covers."""
    fed = study.federation
    if not fed.initial_model:
        return []
    use = "only evaluates it here (rounds = 0), training nothing" if fed.rounds == 0 else "trains on from it"
    return [
        f"initial model: the study {use}; this site accepts only the model whose weights have SHA-256 "
        f"{fed.initial_model_sha256 or '(none pinned: the server will not start it)'}"
        + (" (round 1)" if fed.rounds else "")
    ]


def _approval(study: StudyConfig, site: SiteConfig, config: Path) -> list[str]:
    """Whether this site has approved the study, when its policy requires that."""
    if site.approvals is None:
        return []
    approval = approval_of(study, site.approvals)
    if approval is None:
        return [
            f"approval: not approved here (sha256 {study.digest()}); its agent refuses it until approved: "
            f"medfed-site approve --config {config} --study FILE --note '...'"
        ]
    note = f" ({approval['note']})" if approval.get("note") else ""
    return [f"approval: approved {approval['approved-at']} by {approval['by']}{note}"]


def _privacy_outlook(study: StudyConfig, site: SiteConfig, n_train: int) -> list[str]:
    """What the study would spend of the site's patients' budget: the study's ε and the lifetime before and after."""
    privacy = study.privacy
    if privacy.mode != "local":
        return [f"privacy: privacy.mode = '{privacy.mode}': this site's training rounds would spend no local ε"]
    from shared.privacy.site import check_lifetime

    caps = site.privacy_caps()
    outlook = check_lifetime(study, site.name, site.ledger_files(), caps, n_train)
    per_study = f", this site's cap per study {caps.max_epsilon:g}" if math.isfinite(caps.max_epsilon) else ""
    cap = f"its lifetime cap {caps.lifetime_cap:g}" if math.isfinite(caps.lifetime_cap) else "no lifetime cap"
    rounds = study.federation.rounds
    done = f", {rounds - outlook.left} of them already run here" if outlook.left < rounds else ""
    return [
        f"privacy: the study's {rounds} rounds would spend ε {outlook.study:.3f} of this site's patients at "
        f"δ = {privacy.delta:g} (its target {privacy.epsilon:g}{per_study}{done})",
        f"lifetime: all studies on this data have spent ε {outlook.spent:.3f}, and {outlook.after:.3f} with this one "
        f"({cap}, δ = {outlook.delta:.3g})",
    ]
