"""Pooled (all sites' train data together) and local-only baselines, same model and training budget."""

from __future__ import annotations

from torch import nn
from torch.utils.data import ConcatDataset, Dataset

from client.site import SiteConfig, load_site_data
from shared.config import StudyConfig
from shared.device import resolve_device
from shared.initial import starting_model
from shared.tasks import SiteData, get_task
from shared.training import make_loader, make_optimizer, train_epochs
from simulations.progress import progress_bar


def fit_central(study: StudyConfig, train_set: Dataset, label: str = "baseline", quiet: bool = False) -> nn.Module:
    """The study's model trained centrally for rounds x local epochs (the federation's training budget); a progress
    bar named `label` counts the epochs (in a terminal, unless quiet)."""
    model = starting_model(study)  # the federation's starting point: its seed, or its initial model
    device = resolve_device("auto")
    epochs = study.federation.rounds * study.train.local_epochs
    loader = make_loader(train_set, study.train.batch_size, seed=study.seed)
    loss, optimizer = get_task(study.task).train_loss(study, train_set), make_optimizer(model, study.train)
    with progress_bar(f"{label}: epoch", epochs, quiet) as step:
        for _ in range(epochs):  # one epoch at a time: the loader's seeded order runs on as in one call
            train_epochs(model, loader, loss, optimizer, 1, device)
            step()
    return model


def fit_and_score(
    study: StudyConfig, train_set: Dataset, sites: dict[str, SiteData], label: str = "baseline", quiet: bool = False
) -> dict[str, dict[str, float]]:
    """Train the study's model centrally (`fit_central`); score it on each named site's test split."""
    task = get_task(study.task)
    model = fit_central(study, train_set, label, quiet)
    device = resolve_device("auto")
    return {
        site: {"num-examples": len(data.test), **task.evaluate(study, model, data, device)}
        for site, data in sites.items()
    }


def pooled_baseline(study: StudyConfig, sites: list[SiteConfig], quiet: bool = False) -> dict[str, dict[str, float]]:
    """One model on the union of the sites' train splits, scored on each site's test split."""
    data = {s.name: load_site_data(s, study) for s in sites}
    pooled = ConcatDataset([d.train for d in data.values()])
    return fit_and_score(study, pooled, data, "pooled baseline", quiet)


def local_baseline(study: StudyConfig, sites: list[SiteConfig], quiet: bool = False) -> dict[str, dict[str, float]]:
    """Each site alone: trained on its train split, scored on its own test split."""
    scores = {}
    for i, site in enumerate(sites, start=1):
        data = load_site_data(site, study)
        scores.update(fit_and_score(study, data.train, {site.name: data}, f"local baseline {i}/{len(sites)}", quiet))
    return scores
