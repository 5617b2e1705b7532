"""Loaded site data is kept within the byte budget, least recently used dropped first, and loaded once while kept."""

from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import TensorDataset

from client.datacache import DataCache
from client.site import load_site_data, release_site_data
from shared.config import SimulationConfig
from shared.tasks import SiteData, get_task


def site_data(rows: int) -> SiteData:
    """A site with `rows` float32 rows of 10 features in each split: 80 bytes per row and split."""
    split = TensorDataset(torch.zeros(rows, 10), torch.zeros(rows, dtype=torch.int64))
    return SiteData(train=split, test=split)


def test_sites_are_loaded_once_and_the_least_recently_used_is_dropped_past_the_budget():
    cache, loads = DataCache(), []

    def load(name: str, rows: int):
        return lambda: loads.append(name) or site_data(rows)

    budget = 2 * site_data(100).nbytes()
    assert site_data(100).nbytes() == 2 * 100 * (10 * 4 + 8)
    for name in ("a", "b", "a"):
        cache.get(name, load(name, 100), budget)
    assert loads == ["a", "b"] and len(cache) == 2  # "a" was served from the cache
    cache.get("c", load("c", 100), budget)  # "b" is the least recently used now
    cache.get("a", load("a", 100), budget)
    cache.get("b", load("b", 100), budget)
    assert loads == ["a", "b", "c", "b"] and cache.held_bytes() <= budget


def test_a_site_larger_than_the_budget_is_served_but_not_kept():
    cache = DataCache()
    data = cache.get("big", lambda: site_data(1000), budget_bytes=1000)
    assert len(data.train) == 1000 and len(cache) == 0


def test_a_study_cannot_turn_off_a_sites_cache(study, demo_sites, monkeypatch):
    """simulation.site-cache-mib travels with a federation's study; the site keeps its own budget regardless."""
    loads = []
    task = get_task("tabular")
    real = task.load_site
    monkeypatch.setattr(type(task), "load_site", lambda self, *args: loads.append(args) or real(*args))
    hostile = dataclasses.replace(study, simulation=SimulationConfig(site_cache_mib=0))
    release_site_data()
    first, again = load_site_data(demo_sites[0], hostile), load_site_data(demo_sites[0], hostile)
    assert first is again and len(loads) == 1
    release_site_data()
