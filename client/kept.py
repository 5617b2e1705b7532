"""What a site keeps from training to predict later: the statistics it encoded its rows with, per study, in its own
state folder (its ledger-dir). Kept at the site, never sent."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from client.site import SiteConfig
from shared.atomic import atomic_write_text
from shared.config import StudyConfig
from shared.errors import ConfigError
from shared.tasks import SiteData

log = logging.getLogger("medfed.site")


def kept_path(site: SiteConfig, study: StudyConfig) -> Path:
    """The file of this site's statistics for this exact study, named by a hash: a study's text never reaches a path."""
    digest = hashlib.sha256(f"{site.name}\n{study.to_json()}".encode()).hexdigest()
    return site.ledger_dir / "kept" / f"{digest}.json"


def keep(site: SiteConfig, study: StudyConfig, data: SiteData) -> None:
    """Write what the site learned from its train split (when the task keeps anything), atomically, once per change;
    a write that fails is logged and training goes on (only a later prediction needs the file)."""
    if not data.kept:
        return
    path, text = kept_path(site, study), json.dumps({"study": study.name, **data.kept}, indent=2, sort_keys=True)
    try:
        if path.is_file() and path.read_text() == text:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text, mode=0o600)
    except OSError as exc:
        log.warning("site '%s': could not keep its encoding statistics in %s (%s)", site.name, path, exc.strerror)


def load_kept(site: SiteConfig, study: StudyConfig) -> dict[str, Any]:
    """The statistics this site kept when it trained in this study; a clear error when it never did."""
    path = kept_path(site, study)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            "study",
            f"was never trained at site '{site.name}' with its state in {site.ledger_dir} (no {path.name} in "
            f"{path.parent}): prediction encodes rows with the statistics a site kept from its own train split, so "
            "run it at a site that trained in this study, with its --config (or --ledger-dir and --site)",
            source="predict",
        ) from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot be read ({exc})", source="kept statistics") from exc
