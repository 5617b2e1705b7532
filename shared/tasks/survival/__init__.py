"""Survival task: time-to-event tables (a time and a censoring indicator), Cox or discrete-time hazard models, and
concordance, Brier and time-dependent AUC metrics (scikit-survival, the optional `survival` extra)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from shared.assessment import bootstrap_ci
from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.tasks.base import NewInputs, SiteData, Task
from shared.tasks.survival import demo
from shared.tasks.survival.curves import (
    Predictions,
    breslow_baseline,
    cox_predictions,
    cox_survival,
    discrete_predictions,
)
from shared.tasks.survival.cuts import HISTOGRAM, event_histogram, histogram_problem, quantile_cuts
from shared.tasks.survival.data import load_survival_site
from shared.tasks.survival.loss import CoxPartialLikelihood, LogisticHazardLikelihood
from shared.tasks.survival.metrics import evaluation_times, survival_curves, survival_metrics
from shared.tasks.survival.model import build_survival_model
from shared.tasks.survival.schema import agreed_survival_data, survival_schema
from shared.tasks.survival.spec import check_survival_study, data_spec, infer_survival_options, model_spec
from shared.tasks.tabular.data import encode_new_rows
from shared.tasks.tabular.schema import site_choices, without_split
from shared.tasks.tabular.spec import local_dp_notes, split_columns
from shared.tasks.tabular.table import read_with_options

BASELINE = "cox-baseline-survival"  # the key of a site's kept Cox baseline, by horizon


class SurvivalTask(Task):
    """Patients followed until an event or censoring, one row each."""

    name = "survival"
    keeps_statistics = True
    headline = ("c-index", "integrated-brier")
    classifies = False
    setup_keys = ("cut-points",)
    curves = "survival"

    def check_study(self, study: StudyConfig) -> None:
        """Validate `[data]` and `[model]`, and refuse the Cox model under local DP."""
        check_survival_study(study)

    def infer_data(self, path: Path, site: str, hints: dict[str, Any]) -> dict[str, Any]:
        """Features, category lists, cut points and horizons of a table; `hints` must name `time` and `event`."""
        time, event = _outcome_columns(hints)
        table = read_with_options(path, site, hints).frame
        categorical = hints.get("categorical")
        inferred = infer_survival_options(
            table,
            time,
            event,
            list(categorical) if categorical is not None else None,
            split_columns(hints),
        )
        return {**inferred, **{k: v for k, v in hints.items() if k != "categorical"}}

    def schema(self, path: Path, site: str, hints: dict[str, Any], min_cell: int) -> dict[str, Any]:
        """The table's feature columns, types and category labels seen often enough, and its time and event
        columns by name."""
        time, event = _outcome_columns(hints)
        table = without_split(read_with_options(path, site, hints).frame, hints)
        categorical = list(hints.get("categorical") or [])
        return survival_schema(table, site, time, event, categorical, min_cell) | site_choices(hints)

    def study_template(self, schemas: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], str]:
        """The time and event columns, features and categories the sites agree on; the horizons and cut points are
        the author's to add (a schema holds no time)."""
        advice = (
            "# Add horizons = [...] in the time column's units (where Brier, time-dependent AUC and Kaplan-Meier\n"
            '# are read) and, for model.name = "discrete", cut-points or cut-grid-max (the federated cut-point\n'
            "# step); then [privacy] and [model] as the README's study config shows.\n"
        )
        return agreed_survival_data(schemas), advice

    def study_notes(self, study: StudyConfig) -> list[str]:
        """Without horizons a study reports the C-indices only; under local DP, the site statistics ε does not cover."""
        spec = data_spec(study)
        horizons = [
            "no data.horizons: the sites will report Harrell's and Uno's C only, with no Brier score, time-dependent "
            "AUC or Kaplan-Meier curves; list horizons = [...] in the time column's units to have them"
        ]
        return ([] if spec.horizons else horizons) + local_dp_notes(study, spec.site_statistics())

    def load_site(self, path: Path, site: str, study: StudyConfig) -> SiteData:
        """Read, validate and split the site's table, stratified on the event."""
        return load_survival_site(path, site, data_spec(study), study.seed)

    def new_inputs(
        self, path: Path, site: str, study: StudyConfig, kept: dict[str, Any], id_column: str | None
    ) -> NewInputs:
        """New patients' features encoded with the agreed categories and the site's own kept statistics (no time or
        event needed)."""
        return encode_new_rows(path, site, data_spec(study), kept, id_column)

    def example_input(self, study: StudyConfig, n: int) -> torch.Tensor:
        """Standardised-looking encoded rows."""
        return torch.randn(n, data_spec(study).n_inputs)

    def class_names(self, study: StudyConfig) -> list[str]:
        """None: a survival model's outputs are a risk or hazards, not classes."""
        return []

    def output_meaning(self, study: StudyConfig) -> str:
        """The Cox model's linear predictor, or the discrete-time model's hazard logits."""
        if model_spec(study).name == "cox":
            return "the linear predictor, the log relative hazard (higher: earlier event)"
        return (
            f"hazard logits, one per interval (0, c1], (c1, c2], ... up to each of the study's "
            f"{len(data_spec(study).cut_points)} cut points (sigmoid gives the interval's hazard; survival to a cut "
            "point is the product of 1 - hazard up to it)"
        )

    def prediction_columns(
        self, study: StudyConfig, outputs: np.ndarray, kept: dict[str, Any]
    ) -> dict[str, np.ndarray]:
        """The risk score (higher: earlier event) and survival at each horizon. A Cox model's survival uses the
        baseline the site kept from its train split with the final model (`final_statistics`); a horizon past that
        split's last time is left empty, and a site that kept no baseline gives the risk only."""
        spec = data_spec(study)
        if model_spec(study).name == "cox":
            baseline = kept.get(BASELINE)
            if baseline is None:
                return {"risk": outputs[:, 0]}
            s0 = np.array([np.nan if baseline.get(f"{t:g}") is None else baseline[f"{t:g}"] for t in spec.horizons])
            predicted = cox_survival(s0, outputs[:, 0], np.asarray(spec.horizons, float))
        else:
            predicted = discrete_predictions(outputs, spec.cut_points, np.asarray(spec.horizons, float))
        return {
            "risk": predicted.risk,
            **{f"survival@{t:g}": predicted.survival[:, i] for i, t in enumerate(spec.horizons)},
        }

    def final_statistics(
        self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device
    ) -> dict[str, Any]:
        """Cox: the site's baseline survival at each horizon (Breslow's estimator on its train split, with the final
        model), None past the split's last time; it stays at the site, for `medfed-site predict`."""
        if model_spec(study).name != "cox":
            return {}
        outputs, outcome = _outputs(model, data.train, device)
        s0 = breslow_baseline(outputs[:, 0], outcome)
        return {BASELINE: {f"{t:g}": float(s0(t)) if t <= s0.domain[1] else None for t in data_spec(study).horizons}}

    def build_model(self, study: StudyConfig) -> nn.Module:
        """The Cox risk or the discrete-time hazard model, sized from the agreed schema and cut points."""
        spec = data_spec(study)
        return build_survival_model(spec.n_inputs, len(spec.cut_points), model_spec(study))

    def loss(self, study: StudyConfig | None = None) -> nn.Module:
        """Cox's negative partial log-likelihood, or the logistic hazard's negative log-likelihood."""
        if study is None:
            raise TypeError("the survival loss depends on the study's model and cut points: pass the study")
        model = model_spec(study)
        if model.name == "cox":
            return CoxPartialLikelihood(model.ties)
        return LogisticHazardLikelihood(data_spec(study).cut_points)

    def evaluate(self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device) -> dict[str, float]:
        """Loss and survival metrics on the held-out split; the train split gives the Cox baseline and the
        censoring distribution."""
        outputs_train, outcome_train = _outputs(model, data.train, device)
        outputs_test, outcome_test = _outputs(model, data.test, device)
        loss = float(self.loss(study)(torch.from_numpy(outputs_test), torch.from_numpy(outcome_test)))
        spec = data_spec(study)
        predicted = self.predictions(study, outputs_train, outcome_train, outputs_test)
        return {"loss": loss, **survival_metrics(spec, outcome_train, outcome_test, predicted)}

    def assess(
        self, study: StudyConfig, model: nn.Module, data: SiteData, device: torch.device, threshold: float | None = None
    ) -> dict[str, Any]:
        """Bootstrap intervals of the headline metrics over the held-out patients, the model and the train split's
        censoring distribution held fixed; only for a metric the split itself reports (never for a C-index flagged
        unreliable). With them, the split's Kaplan–Meier and the model's mean predicted survival on the curves' grid."""
        outputs_train, outcome_train = _outputs(model, data.train, device)
        outputs_test, outcome_test = _outputs(model, data.test, device)
        spec = data_spec(study)
        predicted = self.predictions(study, outputs_train, outcome_train, outputs_test)

        def resampled(outcome: np.ndarray, rows: np.ndarray) -> dict[str, float]:
            drawn = dataclasses.replace(predicted, risk=predicted.risk[rows], survival=predicted.survival[rows])
            return survival_metrics(spec, outcome_train, outcome, drawn, headline_only=True)

        reported = tuple(m for m in self.headline if m in resampled(outcome_test, np.arange(len(outcome_test))))
        intervals = bootstrap_ci(outcome_test, np.arange(len(outcome_test)), resampled, reported, study.seed)
        return {**intervals, **survival_curves(spec, outcome_test, predicted)}

    def predictions(
        self, study: StudyConfig, outputs_train: np.ndarray, outcome_train: np.ndarray, outputs: np.ndarray
    ) -> Predictions:
        """Risk scores and survival at the study's evaluation times, from the model's raw outputs."""
        spec, times = data_spec(study), evaluation_times(data_spec(study))
        if model_spec(study).name == "cox":
            return cox_predictions(outputs_train[:, 0], outcome_train, outputs[:, 0], times)
        return discrete_predictions(outputs, spec.cut_points, times)

    def needs_setup(self, study: StudyConfig) -> bool:
        """A discrete-time study without cut points has the server compute them from the sites' histograms."""
        return model_spec(study).name == "discrete" and not data_spec(study).cut_points

    def setup_answer(self, study: StudyConfig, data: SiteData) -> dict[str, Any]:
        """The site's train-split event counts on the study's grid."""
        outcome = data.train.tensors[1]
        return {"num-examples": len(outcome), HISTOGRAM: event_histogram(data_spec(study), outcome)}

    def setup_problem(self, study: StudyConfig, answer: dict[str, Any]) -> str | None:
        """A histogram of the grid's length holding plausible counts, or why not."""
        return histogram_problem(data_spec(study), answer)

    def complete_study(self, study: StudyConfig, answers: list[dict[str, Any]]) -> StudyConfig:
        """The study with cut points at the event-time quantiles of the summed histograms."""
        counts = np.sum([answer[HISTOGRAM] for answer in answers], axis=0)
        if not counts.sum():
            raise ConfigError("data.cut-points", "cannot be computed: no site reported an event in its train split")
        return dataclasses.replace(study, data={**study.data, "cut-points": quantile_cuts(data_spec(study), counts)})

    def metrics(
        self, study: StudyConfig, y_true: np.ndarray, scores: np.ndarray, threshold: float | None = None
    ) -> dict[str, float]:
        """Not used: survival metrics need the train split too, so `evaluate` computes them."""
        raise NotImplementedError("survival metrics come from SurvivalTask.evaluate")

    def demo_study(self) -> StudyConfig:
        """GBSG2 breast cancer study."""
        return demo.demo_study()

    def write_demo_sites(self, folder: Path, n_sites: int) -> list[Path]:
        """GBSG2 patients split over hospitals, one CSV each."""
        return demo.write_demo_sites(folder, n_sites)


def _outcome_columns(hints: dict[str, Any]) -> tuple[str, str]:
    for key in ("time", "event"):
        if key not in hints:
            raise ConfigError(f"data.{key}", "must name the column of a survival table")
    return hints["time"], hints["event"]


@torch.no_grad()
def _outputs(model: nn.Module, dataset: Dataset, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    model.to(device).eval()
    outputs, outcomes = [], []
    for x, y in DataLoader(dataset, batch_size=1024):
        outputs.append(model(x.to(device)).double().cpu().numpy())
        outcomes.append(y.double().numpy())
    return np.concatenate(outputs), np.concatenate(outcomes)


TASK = SurvivalTask()
