"""What a site keeps to predict later: the statistics it encoded its rows with and the decision threshold it chose
for the final model, per study, in its own state folder (its ledger-dir). Kept at the site, never sent."""

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

log = logging.getLogger("medfed.site")


def kept_path(site: SiteConfig, study: StudyConfig) -> Path:
    """The file of this site's statistics for this exact study, named by a hash: a study's text never reaches a path."""
    digest = hashlib.sha256(f"{site.name}\n{study.to_json()}".encode()).hexdigest()
    return site.ledger_dir / "kept" / f"{digest}.json"


def keep(site: SiteConfig, study: StudyConfig, values: dict[str, Any]) -> None:
    """Merge `values` into what the site keeps for this study, atomically, writing only on a change; a write that
    fails is logged and the study goes on (only a later prediction needs the file)."""
    if not values:
        return
    path = kept_path(site, study)
    try:
        before = json.loads(path.read_text()) if path.is_file() else {"study": study.name}
        after = {**before, **values}
        if after != before:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, json.dumps(after, indent=2, sort_keys=True), mode=0o600)
    except (OSError, ValueError) as exc:
        log.warning("site '%s': could not keep its statistics for prediction in %s (%s)", site.name, path, exc)


def load_kept(site: SiteConfig, study: StudyConfig, required: bool = True) -> dict[str, Any]:
    """What this site kept when it took part in this study; a clear error when it never did and it is `required`."""
    path = kept_path(site, study)
    if not required and not path.is_file():
        return {}
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
