"""Updates a site has already released under local DP, kept so that a repeated round costs no new privacy.

When the server dies after a site sent its round-r update, the resumed study asks for round r again, from the same
global model. Training again would spend ε a second time; sending the very same update again is post-processing
of what was already released and spends nothing. Only the latest round of each study is kept, at the site.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from shared.atomic import atomic_write


class ReleasedUpdates:
    """The site's last released update of one study, under its ledger folder."""

    def __init__(self, ledger_dir: Path, site: str, study: str) -> None:
        # The study name comes from the server: it only ever reaches the path as a hash, inside the folder.
        key = hashlib.sha256(json.dumps([site, study]).encode()).hexdigest()
        self.path = Path(ledger_dir) / "released" / f"{key}.safetensors"

    def find(self, rnd: int, start: str) -> tuple[dict[str, float], ArrayRecord] | None:
        """The metrics and arrays released for round `rnd` from the global model `start`, if exactly that."""
        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="np") as stored:
                meta = stored.metadata()
                tensors = {k: stored.get_tensor(k) for k in stored.keys()}  # noqa: SIM118 - not a dict
            int(meta["round"])
        except (OSError, ValueError, KeyError, TypeError, SafetensorError):
            return None  # unusable: the site trains (and spends) as for any new round
        if int(meta["round"]) != rnd or meta["start"] != start:
            return None
        return json.loads(meta["metrics"]), ArrayRecord({k: Array(v) for k, v in tensors.items()})

    def keep(self, rnd: int, start: str, metrics: dict[str, float], arrays: ArrayRecord) -> None:
        """Store this round's update (fsync'd, then atomically renamed) before it leaves the site."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: np.ascontiguousarray(v.numpy()) for k, v in arrays.items()}
        meta = {"round": str(rnd), "start": start, "metrics": json.dumps(metrics)}
        atomic_write(self.path, lambda tmp: save_file(tensors, str(tmp), metadata=meta), mode=0o600)
