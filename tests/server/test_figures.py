"""The report's figures: what each draws from a study's saved aggregates."""

from __future__ import annotations

import numpy as np

from server.figures import methods_compared
from simulations.report import comparison


def test_the_methods_figure_hatches_one_class_bars_leaves_unreliable_sites_out_and_keeps_its_legend_plain():
    per_site = {s: {"accuracy": 0.8} for s in ("north", "south", "tiny")}
    summary = comparison({"federated": per_site, "local": per_site})
    figure = methods_compared(summary, "accuracy", {"tiny": "held-out split of 6 rows"}, {"local": ["north", "tiny"]})
    ax = figure.axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 1 and not hatched[0].get_fill()  # north's local bar; tiny has no bar to hatch
    filled = [p for p in ax.patches if p.get_fill()]
    assert sum(np.isfinite(p.get_height()) for p in filled) == 4  # 2 methods x 2 reliable sites
    assert [h.get_hatch() for h in figure.legends[0].legend_handles] == [None, None]
