"""Real DP-SGD rounds as a site runs them, each in a fresh SitePrivacy (as a restarted process would)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

from shared.config import PrivacyConfig, StudyConfig
from shared.privacy.caps import PrivacyCaps
from shared.privacy.journal import LedgerFiles
from shared.privacy.site import SitePrivacy
from shared.tasks import build_model
from shared.tasks.tabular.demo import demo_study
from shared.training import make_loader, make_optimizer, train_epochs
from tests.shared.privacy.records import SITE

N_TRAIN = 120


def dp_study(name: str = "breast-cancer-demo", rounds: int = 4, quick: bool = False, **privacy) -> StudyConfig:
    """The demo study under local DP (ε = 2 by default) over `rounds` rounds; `quick`: 2 DP-SGD steps a round."""
    base = demo_study()
    return dataclasses.replace(
        base,
        name=name,
        train=dataclasses.replace(base.train, local_epochs=1, batch_size=N_TRAIN // 2) if quick else base.train,
        privacy=PrivacyConfig(**{"mode": "local", "epsilon": 2.0, **privacy}),
        federation=dataclasses.replace(base.federation, rounds=rounds),
    )


def open_site(study: StudyConfig, folder: Path, caps: PrivacyCaps = PrivacyCaps()) -> SitePrivacy:  # noqa: B008
    """The site's SitePrivacy for this study, its journal in `folder`."""
    return SitePrivacy(study, SITE, LedgerFiles.at(folder, SITE), caps, N_TRAIN)


def train(site: SitePrivacy, study: StudyConfig, rnd: int) -> None:
    """One real DP-SGD round through `site` (already checked), not yet committed."""
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


def run_round(study: StudyConfig, folder: Path, rnd: int, caps: PrivacyCaps = PrivacyCaps()) -> float:  # noqa: B008
    """Open, check, train and commit one round; the study's ε after it."""
    site = open_site(study, folder, caps)
    site.check_round()
    train(site, study, rnd)
    return site.commit(rnd)
