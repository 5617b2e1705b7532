"""The site's privacy audit: a membership-inference attack on a trained model with the site's own data."""

from __future__ import annotations

from pathlib import Path

from client.admission import admit_model
from client.site import SiteConfig, load_site_data
from shared.arrays import load_model_file
from shared.config import StudyConfig
from shared.device import resolve_device
from shared.privacy.audit import membership_auc
from shared.tasks import build_model, get_task


def audit_site(study: StudyConfig, site: SiteConfig, model_file: Path) -> float:
    """Attack AUC on the site's train rows (members) vs its held-out rows; nothing leaves the site."""
    admit_model(study, site)
    model = build_model(study)
    load_model_file(model, model_file)
    data = load_site_data(site, study)
    return membership_auc(model, data.train, data.test, get_task(study.task).loss(study), resolve_device(site.device))
