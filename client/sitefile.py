"""The hospital's site config file (site.toml): who it is, its data, its policy and its kit's certificate and key.

The file stays at the site. The agent passes only its path to the SuperNode, and the ClientApp reads the policy from
it, so nothing a study or an app author sends can change what the site accepts.
"""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.config import KNOWN_TASKS, StudyConfig, parse_section
from shared.device import check_device_name
from shared.errors import ConfigError, PolicyError
from shared.models import OfferedModel, parse_models
from shared.privacy.caps import PrivacyCaps

if TYPE_CHECKING:  # torch loads only once a study gets past the site's other rules
    from shared.tasks.footprint import Footprint

log = logging.getLogger("medfed.site")

# What training a study's model, with the site's data loaded at the study's sizes, may hold here by default
# (shared.tasks.footprint): a full-width ResNet-18 on 224-pixel images in batches of 32 (about 12 GiB) with 3,000 colour
# images (3.4 GiB at the loader's peak) fits, a model or an image size as large as the machine does not.
MAX_TRAINING_MIB = 16384.0
# The longest one round's training may run here, whatever round-timeout a study sets: a study's own timeout bounds how
# long its server waits, not how long a careless or hostile one may hold the site's machine.
MAX_ROUND_MINUTES = 240.0


@dataclass(frozen=True)
class SitePolicy:
    """What this site accepts: tasks, models and their size, its privacy caps, and the fewest sites any aggregate
    may hold."""

    tasks: list[str] = field(default_factory=list)  # empty: every task
    models: list[str] = field(default_factory=list)  # empty: every model of an accepted task
    max_epsilon: float = math.inf
    max_delta: float = 0.0  # 0: 1/(10 n) of the site's n training rows
    lifetime_epsilon: float = 0.0  # over all studies on this site's data; 0: max_epsilon
    min_sites: int = 1
    trusted_publishers: str = ""  # a Flower trusted-entities YAML; the SuperNode then runs only apps they signed
    max_training_mib: float = MAX_TRAINING_MIB
    max_round_minutes: float = MAX_ROUND_MINUTES
    require_approval: bool = False  # only studies approved here (`medfed-site approve`, client.approvals)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(KNOWN_TASKS))
        if unknown:
            raise ConfigError("policy.tasks", f"names unknown task(s) {unknown} (known: {', '.join(KNOWN_TASKS)})")
        try:
            self.caps()
        except ConfigError as exc:
            raise ConfigError(f"policy.{exc.field}", exc.problem) from exc
        if self.min_sites < 1:
            raise ConfigError("policy.min-sites", "must be at least 1")
        if not 0 < self.max_training_mib < math.inf:
            raise ConfigError("policy.max-training-mib", "must be a number of MiB above 0")
        if not 0 < self.max_round_minutes < math.inf:
            raise ConfigError("policy.max-round-minutes", "must be a number of minutes above 0")

    def caps(self) -> PrivacyCaps:
        """The site's privacy caps, which no study can raise."""
        return PrivacyCaps(self.max_epsilon, self.max_delta, self.lifetime_epsilon)

    def check(self, study: StudyConfig, site: str) -> None:
        """Refuse a study that asks for more than this site allows; the message names the site and the rule."""
        refuse = f"site '{site}' refuses study '{study.name}':"
        if self.tasks and study.task not in self.tasks:
            raise PolicyError(f"{refuse} task '{study.task}' is not among this site's accepted tasks {self.tasks}")
        model = str(study.model.get("name", ""))
        if self.models and model not in self.models:
            raise PolicyError(f"{refuse} model '{model or 'default'}' is not among this site's models {self.models}")
        # An evaluation-only study (rounds = 0) aggregates nothing: no update of this site's is ever in a sum.
        if study.federation.rounds and study.federation.min_sites < self.min_sites:
            raise PolicyError(
                f"{refuse} it aggregates as few as {study.federation.min_sites} sites, this site requires "
                f"at least {self.min_sites}"
            )

    def round_limit(self, study: StudyConfig) -> tuple[float, str]:
        """The seconds one round's training may take here, and the setting that sets it: the study's round timeout,
        or this site's own limit when that is shorter."""
        own = self.max_round_minutes * 60
        if own < study.federation.round_timeout:
            return own, f"this site's policy.max-round-minutes = {self.max_round_minutes:g}"
        return study.federation.round_timeout, f"federation.round-timeout = {study.federation.round_timeout:g} s"

    def check_memory(self, study: StudyConfig, site: str, footprint: Footprint, examples: int) -> float:
        """Refuse a study whose training, with the site's `examples` loaded at the study's sizes, would hold more
        memory than `max-training-mib`, else return that figure (MiB). The refusal names the model's figure; the
        data's, which would tell the server the site's row count, stays in the site's own log."""
        model, data = footprint.training_mib, footprint.data_mib(examples)
        if model + data <= self.max_training_mib:
            return model + data
        refusal = (
            f"site '{site}' refuses study '{study.name}': training its model ({footprint.parameters:,} parameters, "
            f"{footprint.trainable:,} trained) would hold about {model:,.1f} MiB"
        )
        if model <= self.max_training_mib:
            log.error(
                "site '%s': its %d examples would take about %.1f MiB to load at the sizes of study '%s'",
                site,
                examples,
                data,
                study.name,
            )
            left = self.max_training_mib - model
            refusal += f", and this site's data, loaded at the study's sizes, more than the {left:,.1f} MiB left of"
        else:
            refusal += ", over"
        raise PolicyError(f"{refusal} this site's policy.max-training-mib = {self.max_training_mib:g}")


@dataclass(frozen=True)
class SiteFile:
    """A parsed site.toml; relative paths are resolved against the file's folder."""

    path: Path
    name: str
    server: str
    ca_certificate: Path
    private_key: Path
    data_path: Path
    task: str
    data_hints: dict[str, Any]
    device: str
    ledger_dir: Path
    policy: SitePolicy
    ledger_key: Path | None = None  # None: beside the ledger folder, in `<ledger-dir>-keys`
    ledger_anchor: Path | None = None  # None: beside the key
    agent_port: int = 9094  # the SuperNode's local port for its ClientApp processes (loopback only)
    # "installed": the site worker runs this site's own medfed and refuses any other app; "server": the SuperNode
    # installs and runs whatever app bundle the server sends (only with trusted-publishers, or for development).
    app_code: str = "installed"
    models: dict[str, OfferedModel] = field(default_factory=dict)  # [models]: pretrained folders by name


def load_site_file(path: Path) -> SiteFile:
    """Read and check a site config; any problem names the file and the key."""
    source = f"site config {path}"
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("config", f"'{path}' does not exist", source="site config") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"is not valid TOML ({exc})", source=source) from exc
    here = path.resolve().parent

    def need(table: dict, key: str, prefix: str = "") -> Any:
        if key not in table or table[key] in ("", None):
            raise ConfigError(prefix + key, "is required", source=source)
        return table[key]

    def local(value: str) -> Path:
        p = Path(str(value)).expanduser()
        return p if p.is_absolute() else here / p

    data = dict(raw.get("data", {}))
    data_path, task = local(need(data, "path", "data.")), str(need(data, "task", "data."))
    if task not in KNOWN_TASKS:
        raise ConfigError("data.task", f"'{task}' is not a known task ({', '.join(KNOWN_TASKS)})", source=source)
    try:
        policy = parse_section(SitePolicy, raw.get("policy", {}), "policy.")
    except ConfigError as exc:
        raise ConfigError(exc.field, exc.problem, source=source) from exc
    if policy.trusted_publishers:
        policy = SitePolicy(**{**policy.__dict__, "trusted_publishers": str(local(policy.trusted_publishers))})
    return SiteFile(
        path=path.resolve(),
        name=str(need(raw, "name")),
        server=str(need(raw, "server")),
        ca_certificate=local(raw.get("ca-certificate", "ca.crt")),
        private_key=local(need(raw, "private-key")),
        data_path=data_path,
        task=task,
        data_hints={k: v for k, v in data.items() if k not in ("path", "task")},
        device=check_device_name(str(raw.get("device", "auto")), source),
        ledger_dir=local(raw.get("ledger-dir", "ledgers")),
        policy=policy,
        ledger_key=local(raw["ledger-key"]) if raw.get("ledger-key") else None,
        ledger_anchor=local(raw["ledger-anchor"]) if raw.get("ledger-anchor") else None,
        agent_port=int(raw.get("agent-port", 9094)),
        app_code=_app_code(raw.get("app-code", "installed"), source),
        models=parse_models(raw.get("models", {}), source, here),
    )


APP_CODE = ("installed", "server")


def _app_code(value: Any, source: str) -> str:
    if value not in APP_CODE:
        raise ConfigError("app-code", f"must be one of {', '.join(APP_CODE)}, got {value!r}", source=source)
    return str(value)
