"""Journal records for tests, importable without torch (the journal's subprocess tests start fast)."""

from __future__ import annotations

SITE = "hospital-1"


def round_record(study: str, rnd: int, noise: float = 1.0) -> dict:
    """A journal round record shaped as SitePrivacy.commit writes it (RDP, δ = 1e-5)."""
    return {
        "kind": "round",
        "study": study,
        "round": rnd,
        "noise-multiplier": noise,
        "sample-rate": 0.1,
        "steps": 10,
        "delta": 1e-5,
        "accountant": "rdp",
        "epsilon": 0.0,
        "lifetime-delta": 1e-5,
    }
