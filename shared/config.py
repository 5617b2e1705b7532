"""The study config: one typed object, read from TOML or Flower's run config and validated once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flwr.common.config import unflatten_dict

from shared.errors import ConfigError, PolicyError
from shared.privacy.accounting import PRV_MAX_EPSILON, PRV_MAX_PASSES

STRATEGIES = ("fedavg", "fedprox", "fedadam", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")
# Robust rules compare single sites' updates: the fewest sites each needs per round, for f = byzantine-sites.
ROBUST_MINIMUM = {"krum": (2, 3, "n > 2f + 2"), "multikrum": (2, 3, "n > 2f + 2"), "bulyan": (4, 3, "n >= 4f + 3")}
WEIGHTINGS = ("examples", "equal")
OPTIMIZERS = ("adam", "sgd")
CLASS_WEIGHTS = ("auto", "balanced", "none")
THRESHOLDS = ("accuracy", "youden", "none")
PRIVACY_MODES = ("off", "local", "central-server", "central-client")
ACCOUNTANTS = ("prv", "rdp")
SECURE_AGGREGATION = ("auto", "on", "off")
KNOWN_TASKS = ("tabular", "imaging", "segmentation", "text", "survival", "multimodal")
GRAD_SAMPLE_MODES = ("auto", "hooks", "ew", "functorch", "ghost")
# The run-config key beside `study-json` by which `medfed-server submit` tells the ServerApp where it found the study's
# initial model (a relative path in the study is read from the study file's folder, not the server's working one).
INITIAL_MODEL_FILE = "initial-model-file"
SHA256 = re.compile(r"[0-9a-f]{64}")
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks")


@dataclass(frozen=True)
class FederationConfig:
    """How the server runs the study: strategy, rounds, sampling and every timeout."""

    # Defaults are medfed's recommended settings for small multi-hospital tabular studies (BENCHMARKS.md).
    strategy: str = "fedadam"
    rounds: int = 20
    fraction: float = 1.0
    min_sites: int = 3  # the fewest sites in any aggregate; secure aggregation needs 3
    proximal_mu: float = 0.01
    server_lr: float = 0.05
    round_timeout: float = 300.0
    connect_timeout: float = 120.0
    # SecAgg+ (Flower's SecAggPlusWorkflow): "auto" is on for a federation (`medfed-server submit`), off in medfed-sim.
    secure_aggregation: str = "auto"
    # More than this fraction of a round's sampled sites must stay to its end; their key shares unmask the sum.
    # Lower tolerates more dropouts, higher resists more sites colluding with the server.
    secagg_threshold: float = 0.5
    secagg_value_range: float = 8.0  # every model value must lie within ±this to be quantised for masking
    secagg_max_weight: int = 100_000  # a site's weight (training examples) counts at most this much
    # Robust aggregation (README "Robust aggregation"); 0 turns a bound off.
    byzantine_sites: int = 1  # f: the faulty sites krum, multikrum and bulyan tolerate
    trimmed_beta: float = 0.34  # fedtrimmedavg: the share of sites cut at each end, per value (1 of 3-5 sites)
    update_norm_bound: float = 0.0  # each site's update (its model minus the global one) is clipped to this L2 norm
    update_norm_median: float = 0.0  # ... and to this multiple of the round's median update norm
    weighting: str = "examples"  # a site's weight in the average: its training examples, or "equal"
    max_examples: int = 100_000  # plaintext rounds: a site's example count counts at most this much
    max_examples_median: float = 0.0  # ... and at most this multiple of the round's median count
    max_aggregate_change: float = 10.0  # an aggregate moving the global model by more than this x its norm is rejected
    max_failed_rounds: int = 3  # rejected aggregates tolerated before the study stops cleanly
    # The released model is the mean of the last this many rounds' global models (1: the last one). Averaging what
    # the rounds already released is post-processing: under DP it costs no privacy and evens out the noise.
    average_last: int = 1
    # The model round 1 starts from, a safetensors file a study saved (empty: the study's own seeded initialisation),
    # pinned by its SHA-256; with rounds = 0 the study only evaluates it at every site (external validation).
    initial_model: str = ""
    initial_model_sha256: str = ""

    def __post_init__(self) -> None:
        _check(self.strategy in STRATEGIES, "federation.strategy", f"must be one of {', '.join(STRATEGIES)}")
        _check(
            self.rounds >= 1 or (self.rounds == 0 and bool(self.initial_model)),
            "federation.rounds",
            "must be at least 1, or 0 with federation.initial-model (a study that only evaluates a given model)",
        )
        _check(
            1 <= self.average_last <= max(self.rounds, 1),
            "federation.average-last",
            f"must be between 1 (the last round's model) and federation.rounds ({self.rounds})",
        )
        self.check_initial_model()
        _check(0 < self.fraction <= 1, "federation.fraction", "must be in (0, 1]")
        _check(self.min_sites >= 1, "federation.min-sites", "must be at least 1")
        _check(self.proximal_mu >= 0, "federation.proximal-mu", "must be >= 0")
        _check(self.server_lr > 0, "federation.server-lr", "must be > 0")
        # Finite too: an infinite wait is the hang these timeouts exist to prevent.
        _check(0 < self.round_timeout < math.inf, "federation.round-timeout", "must be a finite number of seconds > 0")
        _check(
            0 < self.connect_timeout < math.inf, "federation.connect-timeout", "must be a finite number of seconds > 0"
        )
        _check(
            self.secure_aggregation in SECURE_AGGREGATION,
            "federation.secure-aggregation",
            f"must be one of {', '.join(SECURE_AGGREGATION)}",
        )
        _check(0 < self.secagg_threshold < 1, "federation.secagg-threshold", "must be in (0, 1)")
        _check(self.secagg_value_range > 0, "federation.secagg-value-range", "must be > 0")
        _check(self.secagg_max_weight >= 1, "federation.secagg-max-weight", "must be at least 1")
        self.check_robust()
        if self.secure_aggregation == "on":
            self.check_secure_aggregation()

    def check_initial_model(self) -> None:
        """The initial model's path and pin as text; the file itself is read only where the study starts."""
        _check(
            len(self.initial_model) <= 1024 and self.initial_model.isprintable(),
            "federation.initial-model",
            "must be a path of at most 1024 printable characters",
        )
        _check(
            self.initial_model_sha256 == "" or bool(SHA256.fullmatch(self.initial_model_sha256)),
            "federation.initial-model-sha256",
            "must be 64 lowercase hex digits (the weights' SHA-256 on the model card of the study that trained it)",
        )
        _check(
            bool(self.initial_model) or not self.initial_model_sha256,
            "federation.initial-model-sha256",
            "pins federation.initial-model, which the study does not name",
        )

    @property
    def average_from(self) -> int:
        """The first round whose global model the released model averages (`average-last`)."""
        return self.rounds - self.average_last + 1

    def check_robust(self) -> None:
        """Robust-aggregation settings, and the fewest sites per round each robust rule needs to mean anything."""
        _check(self.byzantine_sites >= 0, "federation.byzantine-sites", "must be >= 0")
        _check(0 <= self.trimmed_beta < 0.5, "federation.trimmed-beta", "must be in [0, 0.5)")
        _check(self.update_norm_bound >= 0, "federation.update-norm-bound", "must be >= 0 (0: off)")
        _check(
            self.update_norm_median == 0 or self.update_norm_median >= 1,
            "federation.update-norm-median",
            "must be 0 (off) or at least 1 (below 1 it would clip most honest sites)",
        )
        _check(self.weighting in WEIGHTINGS, "federation.weighting", f"must be one of {', '.join(WEIGHTINGS)}")
        _check(self.max_examples >= 1, "federation.max-examples", "must be at least 1")
        _check(
            self.max_examples_median == 0 or self.max_examples_median >= 1,
            "federation.max-examples-median",
            "must be 0 (off) or at least 1 (below 1 it would cap most honest sites)",
        )
        _check(self.max_aggregate_change >= 0, "federation.max-aggregate-change", "must be >= 0 (0: off)")
        _check(self.max_failed_rounds >= 0, "federation.max-failed-rounds", "must be >= 0")
        if self.strategy in ROBUST_MINIMUM:
            times, plus, rule = ROBUST_MINIMUM[self.strategy]
            needed = times * self.byzantine_sites + plus
            _check(
                self.min_sites >= needed,
                "federation.min-sites",
                f"is {self.min_sites}; strategy '{self.strategy}' tolerating byzantine-sites = {self.byzantine_sites} "
                f"needs at least {needed} sites in every round ({rule}), or it cannot tell a faulty update from honest "
                "ones; raise min-sites, lower byzantine-sites, or use fedmedian, fedtrimmedavg or an update norm bound",
            )
        if self.strategy == "fedtrimmedavg":
            _check(
                int(self.trimmed_beta * self.min_sites) >= 1,
                "federation.trimmed-beta",
                f"is {self.trimmed_beta}; with min-sites = {self.min_sites} it trims no site at all (the cut per end "
                f"is floor(beta x sites)); use at least {1 / self.min_sites:.3g}",
            )

    def single_updates(self) -> str | None:
        """The setting that needs each site's own update or count (which SecAgg+ hides), if any."""
        for name, used in (
            ("federation.strategy", self.strategy not in ("fedavg", "fedprox", "fedadam")),
            ("federation.update-norm-median", self.update_norm_median > 0),
            ("federation.max-examples-median", self.max_examples_median > 0),
        ):
            if used:
                return name
        return None

    def check_secure_aggregation(self) -> None:
        """SecAgg+ needs three sites in every sum: of two, each could subtract its own update and read the other's."""
        _check(
            self.min_sites >= 3,
            "federation.min-sites",
            f"is {self.min_sites}; secure aggregation needs at least 3 sites per round "
            "(with two, each could read the other's update from the sum); "
            'or set federation.secure-aggregation = "off"',
        )
        needs = self.single_updates()
        _check(
            needs is None,
            str(needs),
            "needs each site's own update, which secure aggregation hides from the server; under SecAgg+ bound "
            'updates with federation.update-norm-bound (each site clips its own), or set secure-aggregation = "off"',
        )


@dataclass(frozen=True)
class TrainConfig:
    """What each site does with the model it receives: local epochs and optimiser."""

    local_epochs: int = 1
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "adam"
    weight_decay: float = 0.0
    # A classifier's loss weighs each class by its inverse frequency in the site's own train split ("balanced"), so a
    # rare class is not learnt away. "auto": balanced, except under local DP (StudyConfig.weighs_classes).
    class_weights: str = "auto"
    # A binary classifier's decision threshold, chosen at each site on its validation split to maximise accuracy
    # or Youden's J (balanced accuracy); "none": 0.5.
    threshold: str = "accuracy"

    def __post_init__(self) -> None:
        _check(self.local_epochs >= 1, "train.local-epochs", "must be at least 1")
        _check(self.batch_size >= 1, "train.batch-size", "must be at least 1")
        _check(self.lr > 0, "train.lr", "must be > 0")
        _check(self.optimizer in OPTIMIZERS, "train.optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        _check(self.weight_decay >= 0, "train.weight-decay", "must be >= 0")
        _check(self.class_weights in CLASS_WEIGHTS, "train.class-weights", f"must be one of {', '.join(CLASS_WEIGHTS)}")
        _check(self.threshold in THRESHOLDS, "train.threshold", f"must be one of {', '.join(THRESHOLDS)}")


@dataclass(frozen=True)
class PrivacyConfig:
    """Differential privacy for the whole study: local DP-SGD at each site (Opacus) or central DP (Flower)."""

    mode: str = "off"
    epsilon: float = 3.0  # the whole study's budget: per site (local) or per site's participation (central)
    delta: float = 1e-5
    clip_norm: float = 1.0  # per-sample gradient norm (local) or per-site update norm (central)
    noise_multiplier: float = 0.0  # 0: planned up front from epsilon for every planned round and epoch
    accountant: str = "prv"
    grad_sample_mode: str = "auto"

    def __post_init__(self) -> None:
        _check(self.mode in PRIVACY_MODES, "privacy.mode", f"must be one of {', '.join(PRIVACY_MODES)}")
        _check(self.epsilon > 0, "privacy.epsilon", "must be > 0")
        _check(0 < self.delta < 1, "privacy.delta", "must be in (0, 1)")
        _check(self.clip_norm > 0, "privacy.clip-norm", "must be > 0")
        _check(self.noise_multiplier >= 0, "privacy.noise-multiplier", "must be >= 0 (0 plans it from epsilon)")
        _check(self.accountant in ACCOUNTANTS, "privacy.accountant", f"must be one of {', '.join(ACCOUNTANTS)}")
        _check(
            self.grad_sample_mode in GRAD_SAMPLE_MODES,
            "privacy.grad-sample-mode",
            f"must be one of {', '.join(GRAD_SAMPLE_MODES)}",
        )

    def check_cap(self, site: str, max_epsilon: float) -> None:
        """Refuse (naming the site) a study whose ε is above the site's own cap."""
        if self.epsilon > max_epsilon:
            raise PolicyError(
                f"site '{site}': the study asks for ε = {self.epsilon}, above this site's cap of {max_epsilon}; "
                "refusing"
            )


@dataclass(frozen=True)
class SimulationConfig:
    """How `medfed-sim` runs the virtual sites: a pool of Ray actors sized to the machine, or an existing cluster.

    Ignored by a real federation, where every site runs its own agent."""

    workers: int = 0  # Ray actors sharing the virtual sites; 0: one per core, never more than there are sites
    ray_address: str = ""  # an existing Ray cluster ("auto", "HOST:PORT"); empty: a local Ray started for the run
    memory_limit_gib: float = 0.0  # stop cleanly after a round whose peak passes this; 0: 90 % of the machine's memory
    site_cache_mib: int = 1024  # each actor keeps sites' loaded data up to this size, least recently used dropped
    # The data source a data run records, so that `medfed-sim --study study.json` reruns the same study.
    data: str = ""  # the data scientist's table, notes or image set; empty: the task's built-in data
    site_column: str = ""  # the column naming each row's hospital; empty: split by `partition`
    partition: str = "dirichlet"  # iid | dirichlet (label skew, `alpha`) | quantity (size skew, `alpha`)
    alpha: float = 1.0
    sites: int = 3  # hospitals a partition (or the built-in data) is split into

    def __post_init__(self) -> None:
        _check(self.workers >= 0, "simulation.workers", "must be >= 0 (0: one per core)")
        _check(self.sites >= 1, "simulation.sites", "must be at least 1")
        _check(self.alpha > 0, "simulation.alpha", "must be > 0")
        _check(self.memory_limit_gib >= 0, "simulation.memory-limit-gib", "must be >= 0 (0: 90 % of the machine)")
        _check(self.site_cache_mib >= 0, "simulation.site-cache-mib", "must be >= 0 (0: no cache)")


MIN_CELL = 5  # the usual small-cell suppression threshold of health statistics
MAX_MIN_CELL = 1000


@dataclass(frozen=True)
class ReportConfig:
    """What the sites send for the study's report (report.html, model card) at the final evaluation."""

    # A score bin or class count of fewer patients is never released on its own; a study may only raise this.
    min_cell: int = MIN_CELL

    def __post_init__(self) -> None:
        _check(
            MIN_CELL <= self.min_cell <= MAX_MIN_CELL,
            "report.min-cell",
            f"must be a whole number from {MIN_CELL} to {MAX_MIN_CELL} (fewer patients per released cell could "
            "single them out)",
        )


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking at the coordinator (MLflow, the optional `tracking` extra); sites never track anything."""

    mlflow: str = ""  # empty: off; "local": a SQLite store in the study's output folder; else a tracking URI
    experiment: str = ""  # the MLflow experiment; empty: the study's name

    def __post_init__(self) -> None:
        uri = urlsplit(self.mlflow)
        _check(len(self.mlflow) <= 1024, "tracking.mlflow", "must be at most 1024 characters")
        _check(
            self.mlflow in ("", "local") or uri.scheme in TRACKING_SCHEMES,
            "tracking.mlflow",
            f'must be empty (off), "local" (a store in the study\'s output folder) or a tracking URI of scheme '
            f"{', '.join(TRACKING_SCHEMES)}, got {self.mlflow[:80]!r}",
        )
        # The study travels to every site: a password in it would too. MLflow reads them from the environment.
        _check(
            "@" not in uri.netloc,
            "tracking.mlflow",
            "must not hold a user name or password (the study is sent to every site); on the coordinator, set "
            "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD for a tracking server, or use the database's "
            "own credential file",
        )
        _check(
            len(self.experiment) <= 256 and self.experiment.isprintable(),
            "tracking.experiment",
            "must be at most 256 printable characters",
        )


@dataclass(frozen=True)
class StudyConfig:
    """A whole study; `model` and `data` are the task's own options, which the task validates."""

    name: str = "study"
    task: str = "tabular"
    seed: int = 0
    output_dir: str = "outputs"
    federation: FederationConfig = field(default_factory=FederationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    model: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> StudyConfig:
        """Build and validate a study from a nested mapping with TOML-style dashed keys."""
        return parse_section(cls, raw, "")

    @classmethod
    def from_run_config(cls, run_config: dict[str, Any]) -> StudyConfig:
        """Build a study from Flower's run config: one `study-json` value (`medfed-server submit`), or the flattened
        keys of `[tool.flwr.app.config]`."""
        config = dict(run_config)
        if config.get("study-json"):
            return cls.from_json(str(config["study-json"]))
        config.pop("study-json", None)
        config.pop(INITIAL_MODEL_FILE, None)
        return cls.from_dict(unflatten_dict(config))

    @classmethod
    def from_json(cls, text: str) -> StudyConfig:
        """Rebuild a study from the JSON that travels in each message."""
        return cls.from_dict(json.loads(text))

    def __post_init__(self) -> None:
        _check(
            bool(STUDY_NAME.fullmatch(self.name)) and ".." not in self.name,
            "name",
            "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (it names files and "
            f"folders), got {self.name[:80]!r}",
        )
        if self.federation.rounds == 0 and self.privacy.mode != "off":
            raise ConfigError(
                "privacy.mode",
                f"is '{self.privacy.mode}', but federation.rounds = 0: a study that only evaluates a given model "
                'trains nothing, so it has no ε to spend; set privacy.mode = "off"',
            )
        if self.federation.secure_aggregation == "on" and self.privacy.mode.startswith("central"):
            raise ConfigError(
                "federation.secure-aggregation",
                f"cannot be \"on\" with privacy.mode = '{self.privacy.mode}': central DP clips each site's update at "
                "the server, which secure aggregation hides; use privacy.mode = 'local'",
            )
        if self.privacy.mode != "off" and self.privacy.accountant == "prv" and self.privacy.epsilon > PRV_MAX_EPSILON:
            raise ConfigError(
                "privacy.accountant",
                f"'prv' resolves ε up to {PRV_MAX_EPSILON:g} in bounded time and memory (its cost grows with the ε), "
                f"and privacy.epsilon is {self.privacy.epsilon:g}: use 'rdp', whose cost does not",
            )
        # At any site's size, each local epoch draws every example once on average: the passes DP-SGD composes.
        passes = self.federation.rounds * self.train.local_epochs
        if self.privacy.mode == "local" and self.privacy.accountant == "prv" and passes > PRV_MAX_PASSES:
            raise ConfigError(
                "privacy.accountant",
                f"'prv' cannot account federation.rounds x train.local-epochs = {passes:,} passes over a site's data: "
                f"it composes at most {PRV_MAX_PASSES:,} in bounded time and memory; 'rdp' accounts any number "
                "(or fewer rounds or local epochs)",
            )
        if self.train.class_weights == "balanced" and self.privacy.mode == "local":
            raise ConfigError(
                "train.class-weights",
                "cannot be \"balanced\" with privacy.mode = 'local': weights from the site's class counts make every "
                "patient's gradient depend on the others' labels, which DP-SGD's accounting does not cover; "
                'use "auto" (no weighting under local DP) or "none"',
            )

    def weighs_classes(self) -> bool:
        """Whether a classifier's training loss is class-weighted (`train.class-weights`; "auto": not under local DP,
        where the weights would escape the per-patient accounting)."""
        weights = self.train.class_weights
        return weights == "balanced" or (weights == "auto" and self.privacy.mode != "local")

    def secure_aggregation(self, deployed: bool) -> bool:
        """Whether rounds run SecAgg+: "auto" means on in a federation unless central DP or a robust setting needs
        each site's update."""
        fed = self.federation
        per_site = self.privacy.mode.startswith("central") or fed.single_updates() is not None
        if fed.rounds == 0 and fed.secure_aggregation == "auto":  # an evaluation-only study aggregates no update
            return False
        if fed.secure_aggregation == "auto" and (not deployed or per_site):
            return False
        if fed.secure_aggregation != "off":
            fed.check_secure_aggregation()
        return fed.secure_aggregation != "off"

    def to_dict(self) -> dict[str, Any]:
        """Nested mapping with dashed keys: the inverse of `from_dict`."""
        return _dump(self)

    def to_json(self) -> str:
        """Compact JSON for the wire and for the study's output folder."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def digest(self) -> str:
        """SHA-256 of the study as it travels: what a site approves, and what names its output folder. Taken over
        the parsed form, in which every setting has its type (a study built in code with `round_timeout=60` is the
        same study as the file's `round-timeout = 60`, which parses to 60.0)."""
        return hashlib.sha256(StudyConfig.from_json(self.to_json()).to_json().encode()).hexdigest()


def load_study(path: str | Path) -> StudyConfig:
    """Read a study TOML file (or the study.json a run wrote), with errors that name the file."""
    path = Path(path)
    parse = json.loads if path.suffix.lower() == ".json" else tomllib.loads
    try:
        raw = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "does not exist", source="study file") from exc
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(
            str(path), f"is not valid {path.suffix.lstrip('.').upper() or 'TOML'} ({exc})", source="study file"
        ) from exc
    try:
        return StudyConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.problem, source=f"study file {path}") from exc


def raise_first(problems: list[tuple[bool, str, str]]) -> None:
    """Raise ConfigError for the first (bad, field, problem) entry that is bad; the spec classes' field checks."""
    for bad, name, problem in problems:
        if bad:
            raise ConfigError(name, problem)


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ConfigError(name, problem)


def parse_section(cls: type, raw: dict[str, Any], prefix: str) -> Any:
    """Build dataclass `cls` from a dashed-key mapping, rejecting unknown keys and wrong types."""
    if not isinstance(raw, dict):
        raise ConfigError(prefix.rstrip(".") or "study", "must be a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name.replace("_", "-"): f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(prefix + unknown[0], f"is not a known key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for key, value in raw.items():
        f = fields[key]
        kwargs[f.name] = _coerce(hints[f.name], value, prefix + key)
    return cls(**kwargs)


def _coerce(kind: Any, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(kind):
        return parse_section(kind, value, name + ".")
    if typing.get_origin(kind) is dict:
        if not isinstance(value, dict):
            raise ConfigError(name, "must be a table")
        item = typing.get_args(kind)[1]
        return {k: _coerce(item, v, f"{name}.{k}") if typing.get_origin(item) is list else v for k, v in value.items()}
    if typing.get_origin(kind) is list:
        if isinstance(value, str):  # Flower's run config holds scalars: lists arrive as "a,b,c"
            value = [_scalar(typing.get_args(kind)[0], v.strip(), name) for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(name, f"must be a list, got {value!r}")
        return list(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (
        kind is bool
        and not isinstance(value, bool)
        or not isinstance(value, kind)
        or (kind is int and isinstance(value, bool))
    ):
        raise ConfigError(name, f"must be of type {kind.__name__}, got {value!r}")
    return value


def _scalar(kind: Any, text: str, name: str) -> Any:
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError as exc:
            raise ConfigError(name, f"must list {'whole ' if kind is int else ''}numbers, got '{text}'") from exc
    return text


def _dump(obj: Any) -> dict[str, Any]:
    return {f.name.replace("_", "-"): _dump_value(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _dump_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return _dump(value)
    if isinstance(value, dict):
        return dict(value)
    return value
