"""The site's own rules, checked before anything else: a study it refuses touches neither data nor keys."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from flwr.app import Error, Message

from client.approvals import check_approved
from client.site import SiteConfig, data_fingerprint
from shared.config import StudyConfig
from shared.errors import PolicyError

if TYPE_CHECKING:
    from shared.tasks.footprint import Footprint

SITE_REFUSED = 4001  # Flower error code for "the site declined this message"


def admit(study: StudyConfig, site: SiteConfig, train: bool) -> None:
    """Refuse (naming the site and the rule) a study its policy forbids or it has not approved; training also obeys
    the site's ε caps."""
    site.policy.check(study, site.name)
    if site.approvals is not None:
        check_approved(study, site.name, site.approvals)
    if not train:
        return
    if study.federation.rounds == 0:
        raise PolicyError(
            f"site '{site.name}': study '{study.name}' only evaluates its initial model (federation.rounds = 0); "
            "refusing to train"
        )
    caps = site.privacy_caps()
    if study.privacy.mode != "local" and caps.capped:
        # A capped site bounds its patients' ε itself; without local DP that ε is unbounded.
        raise PolicyError(
            f"site '{site.name}': this site only trains with local DP within its ε caps, "
            f"the study has privacy.mode = '{study.privacy.mode}'; refusing"
        )
    study.privacy.check_cap(site.name, site.max_epsilon)


def admit_model(study: StudyConfig, site: SiteConfig, data: Path | None = None) -> float:
    """Refuse a study whose training would take more memory than the site's policy allows: its model sized on torch's
    `meta` device and its data (the site's own, or `data` for predict) counted, not decoded, before any tensor is
    allocated or any patient's values read. Returns that figure (MiB)."""
    from shared.models import offer
    from shared.tasks import get_task  # torch: only once a study has passed the site's other rules

    get_task(study.task).check_study(study)
    offer(site.models)  # a pretrained encoder is sized from the site's own offered folder
    path = data or site.data_path
    footprint = _footprint(study.to_json(), frozenset(site.models.items()))
    return site.policy.check_memory(
        study, site.name, footprint, _examples(path, data_fingerprint(path), data is not None)
    )


@functools.lru_cache(maxsize=32)
def _footprint(study: str, offered: frozenset) -> Footprint:
    """A study's footprint, once per study and set of offered models (which `offer` just made this process's): every
    message of every round asks."""
    from shared.tasks.footprint import model_footprint

    return model_footprint(StudyConfig.from_json(study))


@functools.lru_cache(maxsize=32)
def _examples(path: Path, fingerprint: str, new: bool) -> int:
    """The examples a data file or folder holds (`new`: for prediction), counted again only when its files change."""
    from shared.tasks.counting import count_examples

    return count_examples(path, new)


def refusal(msg: Message, site: SiteConfig, reason: str) -> Message:
    """An error reply naming the site, so the server records who declined and why."""
    named = reason if reason.startswith(f"site '{site.name}'") else f"site '{site.name}': {reason}"
    return Message(Error(code=SITE_REFUSED, reason=named), reply_to=msg)
