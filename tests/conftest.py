"""Fixtures shared by the test suite: small demo studies and site files written to a temp folder."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import server.wire
from client.site import SiteConfig
from shared.config import FederationConfig, StudyConfig
from shared.tasks.tabular.demo import demo_study, write_demo_sites
from tests.raycluster import ray_head


@pytest.fixture
def study(tmp_path: Path) -> StudyConfig:
    """The built-in demo study, cut to 2 rounds and writing under tmp_path."""
    base = demo_study()
    return dataclasses.replace(
        base, output_dir=str(tmp_path / "outputs"), federation=dataclasses.replace(base.federation, rounds=2)
    )


@pytest.fixture
def demo_sites(tmp_path: Path) -> list[SiteConfig]:
    """Three demo hospitals' CSV files."""
    return [SiteConfig(p.stem, p) for p in write_demo_sites(tmp_path / "sites", 3, seed=2)]


def with_federation(study: StudyConfig, **changes) -> StudyConfig:
    """A copy of the study with federation settings changed."""
    return dataclasses.replace(
        study, federation=FederationConfig(**{**dataclasses.asdict(study.federation), **changes})
    )


def set_task_identity() -> None:
    """Messages built outside a Flower runtime need the identity Flower's runtimes set per process."""
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


@pytest.fixture(autouse=True)
def flower_task_identity():
    """Each test's messages get the identity (module fixtures call `set_task_identity` themselves)."""
    set_task_identity()


@pytest.fixture
def recorded(monkeypatch):
    """Every reply the server receives, i.e. everything the sites sent over the wire."""
    replies = []
    original = server.wire.exchange

    def recording(grid, messages, timeout):
        got = original(grid, messages, timeout)
        replies.extend(got)
        return got

    monkeypatch.setattr(server.wire, "exchange", recording)
    return replies


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> None:
    """In-process training on one torch thread per test process: two of them share CI's two cores, and more threads
    only contend (a loaded machine made one DP test 10x slower)."""
    import torch

    torch.set_num_threads(1)


# Each test process's Ray offers one CPU, so a simulation starts one actor: the suite's two test processes already
# keep both of CI's cores busy, and each actor's start (Ray, torch, scikit-learn) costs seconds of CPU.
HEAD_CPUS = 1


@pytest.fixture(scope="session", autouse=True)
def ray_cluster() -> Iterator[str]:
    """One Ray head per test process, which every simulation joins through Ray's own RAY_ADDRESS: starting and
    stopping a Ray for each of the suite's simulations cost seconds each. Tests of the local Ray path unset it."""
    with ray_head(cpus=HEAD_CPUS) as address:
        os.environ["RAY_ADDRESS"] = address
        yield address
        os.environ.pop("RAY_ADDRESS", None)


SLOWEST_FIRST = ("tests/server/test_deployment.py",)  # one loopback federation, mostly waiting on Flower's polls


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The loopback deployment module first: pytest-xdist hands out whole files in collection order, and the longest
    one started last would finish alone."""
    items.sort(key=lambda item: not item.nodeid.startswith(SLOWEST_FIRST))
