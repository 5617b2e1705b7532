"""The study's metrics history: per site and weighted, per round, with events and round timings."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

WEIGHTED = "weighted"


def weighted_mean(site_metrics: dict[str, dict[str, float]], weight_key: str = "num-examples") -> dict[str, float]:
    """Example-weighted mean of each metric over the sites that report it (undefined ones are skipped)."""
    totals: dict[str, float] = {}
    weights: dict[str, float] = {}
    for metrics in site_metrics.values():
        w = metrics.get(weight_key, 0.0)
        for key, value in metrics.items():
            if key == weight_key or not math.isfinite(value):
                continue
            totals[key] = totals.get(key, 0.0) + w * value
            weights[key] = weights.get(key, 0.0) + w
    out = {k: totals[k] / weights[k] for k in totals if weights[k] > 0}
    out[weight_key] = sum(m.get(weight_key, 0.0) for m in site_metrics.values())
    return out


@dataclass
class History:
    """Rows of (round, site, kind, metrics...), events (refusals, rejections, stops) and timings."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"

    def add_metrics(self, rnd: int, kind: str, site_metrics: dict[str, dict[str, float]]) -> dict[str, float]:
        """Record each site's metrics and their weighted mean; return the mean."""
        for site, metrics in sorted(site_metrics.items()):
            self.rows.append({"round": rnd, "site": site, "kind": kind, **metrics})
        mean = weighted_mean(site_metrics) if site_metrics else {}
        if mean.get("num-examples", 0) > 0:
            self.rows.append({"round": rnd, "site": WEIGHTED, "kind": kind, **mean})
        return mean

    def add_events(self, rnd: int, events: list[dict[str, str]]) -> None:
        """Record refusals, rejected updates and missing replies of a round."""
        self.events.extend({"round": rnd, **e} for e in events)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"status": self.status, "metrics": self.rows, "events": self.events, "timings": self.timings}

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> History:
        """The inverse of `to_dict`."""
        return cls(list(saved["metrics"]), list(saved["events"]), list(saved["timings"]), saved["status"])

    def to_frame(self) -> pd.DataFrame:
        """Wide table: one row per (round, site, kind), one column per metric."""
        return pd.DataFrame(self.rows)


def final_site_metrics(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each site's evaluation of the final global model, from a history's metric rows."""
    last = max((r["round"] for r in rows if r["kind"] == "eval"), default=None)
    return {
        r["site"]: {k: v for k, v in r.items() if k not in ("round", "site", "kind") and v == v}
        for r in rows
        if r["kind"] == "eval" and r["round"] == last and r["site"] != WEIGHTED
    }


def site_epsilons(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each site's cumulative local-DP ε after its last trained round."""
    spent: dict[str, float] = {}
    for r in rows:
        if r["kind"] == "train" and r["site"] != WEIGHTED and "dp-epsilon" in r:
            spent[r["site"]] = r["dp-epsilon"]
    return spent
