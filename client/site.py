"""A site's own settings (from Flower's node config) and its cached, validated data."""

from __future__ import annotations

import functools
import hashlib
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flwr.app import ConfigRecord, Context, Message

from client.approvals import approvals_file
from client.datacache import DataCache
from client.sitefile import SiteFile, SitePolicy, load_site_file
from shared.config import StudyConfig
from shared.device import resolve_device
from shared.errors import ConfigError
from shared.identity import check_private, sign
from shared.models import OfferedModel, offer
from shared.privacy.caps import PrivacyCaps
from shared.privacy.journal import LedgerFiles

if TYPE_CHECKING:  # the tasks (torch) load with the data: SecAgg+ key-exchange messages only need the site's name
    from shared.tasks import SiteData

DEFAULT_LEDGER_DIR = Path.home() / ".medfed" / "ledgers"


@dataclass(frozen=True)
class SiteConfig:
    """Who the site is, where its data lies and which device it trains on. Never sent to the server."""

    name: str
    data_path: Path
    device: str = "auto"
    ledger_dir: Path = DEFAULT_LEDGER_DIR
    max_epsilon: float = math.inf  # the site's own privacy caps (PrivacyCaps); a study cannot raise them
    max_delta: float = 0.0
    lifetime_epsilon: float = 0.0
    policy: SitePolicy = field(default_factory=SitePolicy)
    identity_key: Path | None = None  # the kit's private key: the site signs its name in every reply with it
    models: dict[str, OfferedModel] = field(default_factory=dict)  # the pretrained folders it offers, by name
    ledger_key: Path | None = None  # None: beside the ledger folder (LedgerFiles.at)
    ledger_anchor: Path | None = None
    # Loaded data this process keeps, over the sites it serves: the site's (or the simulation's) setting, never a
    # study's, so a study cannot make a site re-read its data for every message or hold more than it chose.
    data_cache_mib: int = 1024
    approvals: Path | None = None  # with policy.require-approval: the site's approved-studies.json (client.approvals)

    def privacy_caps(self) -> PrivacyCaps:
        """The site's privacy caps: per study and over all studies on its data."""
        return PrivacyCaps(self.max_epsilon, self.max_delta, self.lifetime_epsilon)

    def ledger_files(self) -> LedgerFiles:
        """Where the site's privacy journal, its secret key and its anchor live."""
        return LedgerFiles.at(self.ledger_dir, self.name, self.ledger_key, self.ledger_anchor)

    @classmethod
    def from_node_config(cls, node_config: dict[str, Any]) -> SiteConfig:
        """A deployed site names its `site-config` file (site.toml, with its policy); otherwise read `site`,
        `data-path`, `device`, `ledger-dir`, `ledger-key`, `ledger-anchor`, `max-epsilon`, `max-delta` and
        `lifetime-epsilon`; under Flower's simulation without a data path, use the built-in demo split."""
        if "site-config" in node_config:
            return cls.from_site_file(load_site_file(Path(str(node_config["site-config"]))))
        own = {
            "device": str(node_config.get("device", "auto")),
            "max_epsilon": float(node_config.get("max-epsilon", math.inf)),
            "max_delta": float(node_config.get("max-delta", 0.0)),
            "lifetime_epsilon": float(node_config.get("lifetime-epsilon", 0.0)),
        }
        for key in ("ledger-dir", "ledger-key", "ledger-anchor"):
            if key in node_config:
                own[key.replace("-", "_")] = Path(str(node_config[key]))
        if "data-path" in node_config:
            path = Path(str(node_config["data-path"]))
            return cls(str(node_config.get("site", path.stem)), path, **own)
        if "partition-id" in node_config:
            index, total = int(node_config["partition-id"]), int(node_config["num-partitions"])
            folder = Path(tempfile.gettempdir()) / "medfed-demo" / f"{total}-sites"
            own.setdefault("ledger_dir", folder / "ledgers")
            from shared.tasks.tabular.demo import write_demo_site

            return cls(f"hospital-{index + 1}", write_demo_site(folder, index, total), **own)
        raise ConfigError(
            "data-path", "is not set; start the SuperNode with --node-config 'data-path=\"...\"'", source="node config"
        )

    @classmethod
    def from_site_file(cls, site: SiteFile) -> SiteConfig:
        """The site as its own config file describes it."""
        key = site.private_key if site.private_key.is_file() else None  # an --insecure trial may have no kit key
        policy = site.policy
        return cls(
            site.name,
            site.data_path,
            site.device,
            site.ledger_dir,
            policy.max_epsilon,
            policy.max_delta,
            policy.lifetime_epsilon,
            policy,
            identity_key=key,
            models=site.models,
            ledger_key=site.ledger_key,
            ledger_anchor=site.ledger_anchor,
            # Its worker serves this one site, one study at a time, and keeps that study's data between messages:
            # admission has weighed it (twice over) against the same cap, so whatever a study may load stays loaded.
            data_cache_mib=int(policy.max_training_mib),
            approvals=approvals_file(site.path) if policy.require_approval else None,
        )


def data_fingerprint(path: Path) -> str:
    """Names, sizes and modification times of the site's data file, or of every file under its data folder."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        try:
            info = file.stat()
        except OSError:
            continue  # a missing file: the task reports it with the site's name
        digest.update(f"{file}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def load_site_data(site: SiteConfig, study: StudyConfig) -> SiteData:
    """The site's data for this study, read and validated once per process while its fingerprint is unchanged (and
    it fits the site's `data_cache_mib` with the other sites this process serves)."""
    from shared.tasks import get_task

    offer(site.models)  # a pretrained model resolves through the site's own [models], never a path from the study
    key = (study.task, site.data_path, data_fingerprint(site.data_path), site.name, study.to_json())
    load = functools.partial(get_task(study.task).load_site, site.data_path, site.name, study)
    return _LOADED.get(key, load, site.data_cache_mib * 2**20)


def preflight(site: SiteFile, study: StudyConfig | None = None) -> dict[str, Any]:
    """The site's data report (schema, counts, label balance, missing values, unreadable files), kept local.

    Without a study, the data is described as it is (the site config's [data] hints, e.g. the label column).
    """
    from shared.tasks import get_task

    resolve_device(site.device)  # a GPU the site names that is not there: refused before the data is read
    check_private(site.private_key, "private-key", "site config")
    check_private(SiteConfig.from_site_file(site).ledger_files().key, "ledger-key", "site config")
    if study is None:
        options = get_task(site.task).infer_data(site.data_path, site.name, site.data_hints)
        study = StudyConfig.from_dict({"name": "pre-flight", "task": site.task, "data": options})
    return load_site_data(SiteConfig.from_site_file(site), study).report


def release_site_data() -> None:
    """Forget every cached data set (the site worker does so when a new study starts)."""
    _LOADED.clear()


_LOADED = DataCache()  # per process: a simulation actor serves many sites, a site's worker one


def site_from_context(context: Context) -> SiteConfig:
    """The deployed site's config, from the SuperNode's --node-config."""
    return SiteConfig.from_node_config(dict(context.node_config))


def site_record(site: SiteConfig, msg: Message) -> ConfigRecord:
    """A reply's "site" record: the site's name, signed for this run and node with its kit's key when it has one."""
    record = {"name": site.name}
    if site.identity_key is not None:
        record["identity"] = sign(site.identity_key, msg.metadata.run_id, msg.metadata.dst_node_id, site.name)
    return ConfigRecord(record)
