"""One epoch of local DP-SGD through medfed's SitePrivacy, as a site runs it; shared by the task tests."""

from __future__ import annotations

import torch

from shared.privacy.caps import PrivacyCaps
from shared.privacy.journal import LedgerFiles
from shared.privacy.site import SitePrivacy
from shared.tasks import build_model, get_task
from shared.training import make_loader, make_optimizer, train_epochs


def train_private(study, data, ledgers, batch_size: int = 16) -> tuple[torch.nn.Module, float, float]:
    """The DP-wrapped model after one epoch, the epoch's mean loss, and the ε the site's journal then holds."""
    task = get_task(study.task)
    model = build_model(study)
    site = SitePrivacy(study, "h1", LedgerFiles.at(ledgers, "h1"), PrivacyCaps(), len(data.train))
    site.check_round()
    private, optimizer, loader, loss = site.make_private(
        model, make_optimizer(model, study.train), make_loader(data.train, batch_size, 0), task.loss(study)
    )
    mean_loss = train_epochs(private, loader, loss, optimizer, 1, torch.device("cpu"), 0.0, site.empty_batch_step())
    return private, mean_loss, site.commit(1)
