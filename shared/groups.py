"""Parameter groups that only some sites train (a multimodal model's per-modality encoders), averaged only over the
sites that trained them, weighted by how many of their patients did.

A group is every array under a prefix `P.` whose model holds a buffer `P.coverage`. A site sends, for each group,
`global + s * (trained - global)` and `P.coverage = s`, where `s` is the share of its training patients who trained
the group (0 if none did). Any weighted mean of the replies, the plain one or SecAgg+'s unmasked sum (the site's
weight w multiplies both), then holds `global + Σ w s Δ / Σ w` in the group and `Σ w s / Σ w` in its coverage:
dividing the one by the other gives `Σ w s Δ / Σ w s`, the update averaged over the patients who trained the group.
The server needs no per-site value, so this works the same with and without SecAgg+.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord

COVERAGE = "coverage"


def groups(keys: list[str]) -> dict[str, list[str]]:
    """Each group's coverage key and the keys of its arrays."""
    suffix = "." + COVERAGE
    prefixes = [k[: -len(COVERAGE)] for k in keys if k.endswith(suffix)]
    return {p + COVERAGE: [k for k in keys if k.startswith(p) and k != p + COVERAGE] for p in prefixes}


def coverage_problem(arrays: ArrayRecord) -> str | None:
    """Why a reply's coverage values cannot be a share of patients (each must lie in [0, 1]), or None. A reply with
    coverage outside it could shrink the divisor of an encoder's mean and blow its average up."""
    for coverage in groups(list(arrays.keys())):
        values = arrays[coverage].numpy()
        if not ((values >= 0) & (values <= 1)).all():
            return f"tensor '{coverage}' must hold a share of patients in [0, 1]"
    return None


def weigh_groups(trained: ArrayRecord, received: ArrayRecord, shares: Mapping[str, float]) -> ArrayRecord:
    """A site's reply: each group's update scaled by its share (`shares[coverage key]`, 0 when the site did not
    train it) and its coverage set to that share; arrays outside any group as trained."""
    out = {key: array.numpy() for key, array in trained.items()}
    for coverage, keys in groups(list(trained.keys())).items():
        share = float(shares.get(coverage, 0.0))
        for key in keys:
            base = received[key].numpy()
            if np.issubdtype(base.dtype, np.floating):
                step = share * (out[key].astype(np.float64) - base)
                out[key] = (base + step).astype(base.dtype)
        out[coverage] = np.full_like(out[coverage], share)
    return ArrayRecord({key: Array(np.asarray(value)) for key, value in out.items()})


def divide_groups(mean: ArrayRecord, previous: ArrayRecord) -> ArrayRecord:
    """The aggregate from a weighted mean of weighed replies: each group's mean update divided by its mean coverage,
    the previous global arrays kept for a group no site trained; coverage buffers keep their global value."""
    out = {key: array.numpy() for key, array in mean.items()}
    for coverage, keys in groups(list(mean.keys())).items():
        share = float(np.asarray(out[coverage], dtype=np.float64).mean())
        for key in keys:
            base = previous[key].numpy()
            if share > 0 and np.issubdtype(base.dtype, np.floating):
                out[key] = (base + (out[key].astype(np.float64) - base) / share).astype(base.dtype)
            else:
                out[key] = base
        out[coverage] = previous[coverage].numpy()
    return ArrayRecord({key: Array(np.asarray(value)) for key, value in out.items()})
