"""The studies a site has approved, by digest: with `policy.require-approval`, no other study reaches its data.

A hospital's review board approves a protocol, not a kind of study. The site's operator approves a study file with
`medfed-site approve`; the file `approved-studies.json` beside site.toml then holds the SHA-256 of the study as
medfed sends it (`StudyConfig.digest`: every setting, the privacy plan included). A study that differs in anything
(one more round, a higher ε, another model, other columns) has another digest and is refused before any row is read,
whatever the server says. The one change allowed is the federated setup step's: a study approved without the values
that step computes (survival's cut points) is also admitted once the server has filled them in.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from shared.atomic import atomic_write_text
from shared.config import StudyConfig
from shared.errors import ConfigError, PolicyError
from shared.identity import os_user

APPROVALS = "approved-studies.json"


def approvals_file(site_config: Path) -> Path:
    """Where a site's approvals are kept: beside its site.toml."""
    return site_config.with_name(APPROVALS)


def load_approvals(path: Path) -> list[dict[str, Any]]:
    """The site's approvals (none when the file does not exist yet); a damaged file is an error naming it, never an
    empty list, so that it cannot silently admit or refuse everything."""
    try:
        approvals = json.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ConfigError(str(path), f"cannot be read as the site's approvals ({exc})", source="site") from exc
    if not isinstance(approvals, list) or not all(isinstance(a, dict) and "sha256" in a for a in approvals):
        raise ConfigError(str(path), "is not a list of approvals, each with its sha256", source="site")
    return approvals


def approve(path: Path, study: StudyConfig, note: str) -> dict[str, Any]:
    """Record the study's approval (who, when, the note: a review board's reference, say); returns it."""
    from shared.tasks import get_task  # torch: only here and at admission

    approvals = load_approvals(path)
    digest = study.digest()
    if any(a["sha256"] == digest for a in approvals):
        raise ConfigError("--study", f"study '{study.name}' (sha256 {digest[:16]}…) is already approved", "site")
    task = get_task(study.task)
    entry = {
        "sha256": digest,
        "study": study.name,
        # a study the server completes (survival's cut points): also admitted as completed, and only so
        "before-setup-sha256": task.without_setup(study).digest() if task.needs_setup(study) else None,
        "approved-at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "by": os_user(),
        "note": note,
    }
    _save(path, [*approvals, entry])
    return entry


def revoke(path: Path, study: str) -> int:
    """Withdraw every approval of the study named `study`; returns how many there were (none: an error naming the
    approved studies, so that a misspelt name is not taken for a withdrawal)."""
    approvals = load_approvals(path)
    kept = [a for a in approvals if a.get("study") != study]
    if len(kept) == len(approvals):
        names = ", ".join(sorted({str(a.get("study")) for a in approvals})) or "none"
        raise ConfigError("--revoke", f"no study named '{study}' is approved here (approved: {names})", "site")
    _save(path, kept)
    return len(approvals) - len(kept)


def approval_of(study: StudyConfig, path: Path) -> dict[str, Any] | None:
    """The approval that admits this study as it arrived (its setup values filled in or not), or None."""
    approvals, digest = load_approvals(path), study.digest()
    found = next((a for a in approvals if a["sha256"] == digest), None)
    if found is not None:
        return found
    from shared.tasks import get_task  # torch: only for a study that is not approved as it is

    task = get_task(study.task)
    if task.needs_setup(study):
        return None  # not completed: only the exact study approved
    blank = task.without_setup(study).digest()
    return next((a for a in approvals if a.get("before-setup-sha256") == blank), None)


def check_approved(study: StudyConfig, site: str, path: Path) -> None:
    """Refuse, naming the study's digest, a study this site has not approved."""
    if approval_of(study, path) is None:
        raise PolicyError(
            f"site '{site}' refuses study '{study.name}': this site trains and evaluates only studies it has approved, "
            f"and this one (sha256 {study.digest()[:16]}…) is not among them (medfed-site approve at the site)"
        )


def _save(path: Path, approvals: list[dict[str, Any]]) -> None:
    atomic_write_text(path, json.dumps(approvals, indent=1) + "\n", 0o600)  # the site's user's only
