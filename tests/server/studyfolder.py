"""A finished study's output folder, written through the server's own classes from generated figures (no run)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord

from server.history import History
from server.outputs import StudyOutputs
from shared.assessment import class_counts, score_bins
from shared.config import PrivacyConfig
from shared.tasks.tabular.demo import demo_study
from simulations.report import ONE_CLASS_ADVICE, comparison

SITES = {"north": 40, "south": 120, "tiny": 8}  # training examples; "tiny" has a held-out split of 3
EXPECTED_FIGURES = ("learning-curves", "privacy", "roc-pr", "calibration", "comparison", "timing")


def write_study_folder(folder: Path) -> Path:
    """Two rounds of a local-DP tabular study over three sites, with a refusal, the sites' final assessments and a
    simulation's summary."""
    base = demo_study()
    study = dataclasses.replace(
        base,
        name="report-demo",
        federation=dataclasses.replace(base.federation, rounds=2),
        privacy=PrivacyConfig(mode="local", epsilon=3.0),
    )
    rng = np.random.default_rng(0)
    history, fed = History(), study.federation
    for rnd in (1, 2):
        train = {s: {"num-examples": n, "train-loss": 0.7 / rnd, "dp-epsilon": 1.1 * rnd} for s, n in SITES.items()}
        history.add_metrics(rnd - 1, "eval", _scores(rng, 0.6 + 0.15 * rnd), fed)
        history.add_metrics(rnd, "train", train, fed)
        history.timings.append({"round": rnd, "wall-s": 1.5, "max-site-compute-s": 1.0, "overhead-s": 0.5})
    history.add_events(2, [{"site": "tiny", "event": "refused", "reason": "site 'tiny': budget exhausted"}])
    final = _scores(rng, 0.9)
    history.add_metrics(2, "eval", final, fed)
    history.assessments = {
        site: {
            "ci-accuracy-low": 0.8,
            "ci-accuracy-high": 0.97,
            **score_bins(rng.random(30), rng.random(30) < 0.4, study.report.min_cell),
            "bins-top-label": 0,
            "class-counts": class_counts(rng.integers(0, 2, n), 2, study.report.min_cell),
        }
        for site, n in SITES.items()
        if site != "tiny"
    }
    history.status = "completed"
    outputs = StudyOutputs(folder)
    outputs.write_study(study)
    outputs.write_history(history)
    outputs.save_model("model.safetensors", ArrayRecord({"w": Array(rng.random((4, 3)).astype(np.float32))}))
    methods = {m: {s: {**final[s], "accuracy": final[s]["accuracy"] - d} for s in SITES} for m, d in _METHODS.items()}
    privacy = {s: {"mia-auc": 0.5 + i / 100, "epsilon": 2.2} for i, s in enumerate(SITES)}
    unreliable = {"tiny": "held-out split of 3 rows (under 10)"}
    single = {"sites": {"local": ["north"]}, "try": ONE_CLASS_ADVICE}  # the local model predicts one class there
    summary = {**comparison(methods), "privacy": privacy, "unreliable": unreliable, "single-class": single}
    outputs.write_json("summary.json", summary)
    return folder


_METHODS = {"federated": 0.0, "pooled": -0.01, "local": 0.05}


def _scores(rng: np.random.Generator, accuracy: float) -> dict[str, dict[str, float]]:
    held_out = {"north": 10, "south": 30, "tiny": 3}
    return {
        s: {"num-examples": held_out[s], "accuracy": accuracy, "roc-auc": min(1.0, accuracy + rng.random() / 20)}
        for s in SITES
    }
