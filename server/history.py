"""The study's metrics history: per site and weighted, per round, with events and round timings."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from server.weights import weigh
from shared.config import FederationConfig

WEIGHTED = "weighted"


def weighted_mean(site_metrics: dict[str, dict[str, float]], weights: Mapping[str, float]) -> dict[str, float]:
    """Mean of each metric (num-examples aside) over the sites that report it, undefined values skipped, site s
    weighing `weights[s]`."""
    totals: dict[str, float] = {}
    sums: dict[str, float] = {}
    for site, metrics in site_metrics.items():
        for key, value in metrics.items():
            if key == "num-examples" or not math.isfinite(value):
                continue
            totals[key] = totals.get(key, 0.0) + weights[site] * value
            sums[key] = sums.get(key, 0.0) + weights[site]
    return {k: totals[k] / sums[k] for k in totals if sums[k] > 0}


@dataclass
class History:
    """Rows of (round, site, kind, metrics...), events (refusals, rejections, stops), timings and the sites' final
    assessments."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    assessments: dict[str, dict[str, Any]] = field(default_factory=dict)  # each site's final assessment

    def add_metrics(
        self,
        rnd: int,
        kind: str,
        site_metrics: dict[str, dict[str, float]],
        federation: FederationConfig,
        secure: bool = False,
    ) -> dict[str, float]:
        """Record each site's metrics and their mean, each site weighing what aggregation weighs it (its example claim
        capped, or equal); return the mean, with num-examples the examples counted."""
        sites = sorted(site_metrics)
        for site in sites:
            self.rows.append({"round": rnd, "site": site, "kind": kind, **site_metrics[site]})
        weighing = weigh([site_metrics[s].get("num-examples", 0.0) for s in sites], federation, secure)
        if sum(weighing.counted) == 0:
            return {}
        mean = weighted_mean(site_metrics, dict(zip(sites, weighing.weights, strict=True)))
        mean["num-examples"] = sum(weighing.counted)
        self.rows.append({"round": rnd, "site": WEIGHTED, "kind": kind, **mean})
        return mean

    def add_events(self, rnd: int, events: list[dict[str, str]]) -> None:
        """Record refusals, rejected updates and missing replies of a round."""
        self.events.extend({"round": rnd, **e} for e in events)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "status": self.status,
            "metrics": self.rows,
            "events": self.events,
            "timings": self.timings,
            "assessments": self.assessments,
        }

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> History:
        """The inverse of `to_dict`."""
        return cls(
            list(saved["metrics"]),
            list(saved["events"]),
            list(saved["timings"]),
            saved["status"],
            dict(saved.get("assessments", {})),  # absent from a state saved before reports
        )

    def to_frame(self) -> pd.DataFrame:
        """Wide table: one row per (round, site, kind), one column per metric."""
        return pd.DataFrame(self.rows)


def final_site_metrics(rows: list[dict[str, Any]], weighted: bool = False) -> dict[str, dict[str, float]]:
    """Each site's evaluation of the final global model, from a history's metric rows; with `weighted`, also the
    weighted row, as aggregation weighed the sites."""
    last = max((r["round"] for r in rows if r["kind"] == "eval"), default=None)
    return {
        r["site"]: {k: v for k, v in r.items() if k not in ("round", "site", "kind") and v == v}
        for r in rows
        if r["kind"] == "eval" and r["round"] == last and (weighted or r["site"] != WEIGHTED)
    }


def site_epsilons(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each site's cumulative local-DP ε after its last trained round."""
    spent: dict[str, float] = {}
    for r in rows:
        if r["kind"] == "train" and r["site"] != WEIGHTED and "dp-epsilon" in r:
            spent[r["site"]] = r["dp-epsilon"]
    return spent
