"""`medfed-sim` on a user's CSV with a site column or image set: federated, pooled and local results side by side."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from shared.tasks.imaging.demo import synthetic_images
from shared.tasks.tabular.demo import breast_cancer_table
from shared.tasks.text.demo import CLASSES, synthetic_notes
from simulations.cli import cli


def test_user_csv_with_site_column(tmp_path):
    table = breast_cancer_table().iloc[:, [0, 1, 2, 3, -1]]
    table.insert(0, "hospital", ["north", "south", "east"] * (len(table) // 3) + ["north"] * (len(table) % 3))
    table.insert(1, "ward", ["A", "B"] * (len(table) // 2) + ["A"] * (len(table) % 2))
    path = tmp_path / "patients.csv"
    table.to_csv(path, index=False)
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli,
        ["--data", str(path), "--label", "diagnosis", "--site-column", "hospital", "--rounds", "2", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "round   2/2" in result.output and "mean over sites" in result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary) == {"federated", "pooled", "local", "privacy", "timing"}
    assert all(0 <= summary["privacy"][site]["mia-auc"] <= 1 for site in ("east", "north", "south"))
    assert set(summary["federated"]["per_site"]) == {"east", "north", "south"}
    study = json.loads((out / "study.json").read_text())
    assert study["data"]["categorical"] == {"ward": ["A", "B"]}
    assert "hospital" not in study["data"]["features"]
    assert sorted(p.name for p in (out / "sites").iterdir()) == ["east.csv", "north.csv", "south.csv"]
    assert all("hospital" not in pd.read_csv(p).columns for p in (out / "sites").iterdir())


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    result = CliRunner().invoke(cli, ["--data", str(tmp_path / "none.csv"), "--label", "y"])
    assert result.exit_code == 2
    assert "error:" in result.output and "none.csv" in result.output and "Traceback" not in result.output


def test_medmnist_style_npz_is_split_into_sites(tmp_path):
    images, labels, _ = synthetic_images(300, seed=4)
    path = tmp_path / "lesions.npz"
    np.savez(path, train_images=images, train_labels=labels[:, None])
    out = tmp_path / "run"
    args = ["--task", "imaging", "--data", str(path), "--partition", "iid", "--rounds", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--no-baselines"])
    assert result.exit_code == 0, result.output
    study = json.loads((out / "study.json").read_text())
    assert study["name"] == "lesions" and study["data"]["classes"] == [0, 1] and study["data"]["image-size"] == 28
    held = [np.load(p)["train_images"].shape[0] for p in sorted((out / "sites").glob("*.npz"))]
    assert held == [100, 100, 100]


def test_notes_file_is_split_into_sites_by_label(tmp_path):
    path = tmp_path / "notes.jsonl"
    synthetic_notes(300, seed=5).rename(columns={"label": "service"}).to_json(path, orient="records", lines=True)
    out = tmp_path / "run"
    args = ["--task", "text", "--data", str(path), "--label", "service", "--rounds", "1", "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, "--no-baselines"])
    assert result.exit_code == 0, result.output
    study = json.loads((out / "study.json").read_text())
    assert study["data"]["label-column"] == "service" and study["data"]["classes"] == sorted(CLASSES)
    assert sum(len(pd.read_csv(p)) for p in (out / "sites").glob("*.csv")) == 300


def test_secure_aggregation_with_two_sites_per_round_is_refused_by_name():
    result = CliRunner().invoke(cli, ["--secure-aggregation", "on", "--min-sites", "2"])
    assert result.exit_code == 2 and "federation.min-sites" in result.output
    assert 'secure-aggregation = "off"' in result.output and "Traceback" not in result.output
