"""The Fed-TCGA-BRCA benchmark's data handling: FLamby's files read into regions and folds, cross-validation folds
that never hold a test row, and studies that every region's loader reads with the static split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.errors import DataError
from shared.tasks import get_task
from simulations.benchmarks.tcga_brca import EVENT, FOLD, REGIONS, brca_study, read_brca, validation_fold, write_sites


@pytest.fixture(scope="module")
def flamby(tmp_path_factory):
    """FLamby-shaped files: pid, 3 covariates, E and T; fold2 = train_<c>/test_<c> over the 6 regions."""
    folder = tmp_path_factory.mktemp("tcga")
    rng = np.random.default_rng(0)
    n = 360
    region, test = np.arange(n) % 6, rng.random(n) < 0.2
    brca = pd.DataFrame(
        {
            "pid": [f"TCGA-{i:04d}" for i in range(n)],
            "age_at_index": rng.integers(30, 90, n),
            "race_white": rng.integers(0, 2, n),
            "stage_ii": rng.integers(0, 2, n),
            "E": (rng.random(n) < 0.3).astype(int),
            "T": rng.integers(1, 4000, n),
        }
    )
    brca.to_csv(folder / "brca.csv", index=False)
    split = pd.DataFrame(
        {
            "pid": brca["pid"],
            "fold": np.where(test, "test", "train"),
            "fold2": [f"{'test' if t else 'train'}_{c}" for t, c in zip(test, region, strict=True)],
        }
    )
    split.to_csv(folder / "train_test_split.csv", index=False)
    return folder


def test_the_validation_folds_hold_train_rows_only_each_once_with_events_on_both_sides(flamby):
    table = read_brca(flamby)
    folds = [validation_fold(table, fold, 3) for fold in range(3)]
    train_pids = set(table.loc[table[FOLD] == "train", "pid"])
    held = [set(f.loc[f[FOLD] == "test", "pid"]) for f in folds]
    assert all(set(f["pid"]) == train_pids for f in folds)
    assert not (held[0] & held[1]) and not (held[1] & held[2]) and not (held[0] & held[2])
    assert set().union(*held) == train_pids  # every stratum here has more than one row
    for validation in folds:
        assert 0.28 < (validation[FOLD] == "test").mean() < 0.39
        for i in range(len(REGIONS)):
            rows = validation[validation["region"] == i]
            assert rows.groupby(FOLD)[EVENT].sum().min() >= 1


def test_each_region_reads_flambys_static_split(flamby, tmp_path):
    table = read_brca(flamby)
    sites = write_sites(table, tmp_path)
    study = brca_study(table, "discrete", "fedavg", 1, {"lr": 0.05, "std": 1})
    data = get_task("survival").load_site(sites[2].data_path, sites[2].name, study)
    region = table[table["region"] == 2]
    assert (len(data.train), len(data.test)) == tuple((region[FOLD] == f).sum() for f in ("train", "test"))
    assert data.train.tensors[0].shape[1] == 3


def test_missing_flamby_files_are_named(tmp_path):
    with pytest.raises(DataError, match="brca.csv"):
        read_brca(tmp_path)


def test_settings_are_chosen_on_the_folds_and_the_json_keeps_its_keys(flamby, tmp_path, monkeypatch):
    import simulations.benchmarks.tcga_brca as bench

    calls = []

    def scored(table, sites, work, runs):
        """A fake score per run: on the folds it favours lr 0.2 and clip 1; on the test rows it is fixed."""
        calls.append(work.name)
        on_test = "validation" not in str(work)
        return [0.6 if on_test else 0.5 + 0.1 * ("lr0.2" in s) + 0.05 * ("clip1" in s) for _, _, s, _, _ in runs]

    monkeypatch.setattr(bench, "evaluate", scored)
    results = bench.run(flamby, tmp_path, [1, 2], [1], 3)
    assert len(calls) == 4  # three folds, then the test split once
    assert results["recommended"] in results["methods"] and results["methods"]["cox-fedavg"]["c_index"] == 0.6
    assert all(m["setting"].startswith("lr0.2") for m in results["methods"].values())
    for eps in ("1", "3", "8"):
        assert results["dp"][eps]["method"] == "discrete-fedadam" and "clip1" in results["dp"][eps]["setting"]
        assert {"c_index", "sd"} <= set(results["dp"][eps])


def test_the_exploration_cross_validates_each_grid_setting_per_seed(flamby, tmp_path, monkeypatch):
    import simulations.benchmarks.tcga_brca as bench
    from simulations.benchmarks.tcga_brca_explore import explore

    def scored(table, sites, work, runs):
        assert set(table[FOLD]) == {"train", "test"} and len(table) < len(read_brca(flamby))  # train rows only
        return [0.7 if eps else 0.6 + 0.01 * seed for _, _, _, seed, eps in runs]

    monkeypatch.setattr(bench, "evaluate", scored)
    monkeypatch.setattr(bench, "CANDIDATES", dict(bench.CANDIDATES))
    monkeypatch.setattr(bench, "DP_CANDIDATES", dict(bench.DP_CANDIDATES))
    grid = [
        {"model": "cox", "strategy": "fedadam", "lr": 0.2, "std": 0, "wd": 0.01},
        {"model": "discrete", "strategy": "fedavg", "lr": 0.2, "std": 1, "clip": 0.2, "batch": 8, "eps": 3.0},
    ]
    results = explore(flamby, tmp_path, grid, [1, 2], 3)
    assert results["cox-strategyfedadam-lr0.2-std0-wd0.01"]["per_seed"] == pytest.approx([0.61, 0.62])
    assert results["discrete-strategyfedavg-lr0.2-std1-clip0.2-batch8-eps3"]["cv_c_index"] == pytest.approx(0.7)
