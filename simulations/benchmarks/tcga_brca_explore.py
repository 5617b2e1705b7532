"""Cross-validate extra Fed-TCGA-BRCA settings on the train rows only (FLamby's test rows are never scored): how
BENCHMARKS.md compared other DP recipes and weight decay with the benchmark's candidates.

    python -m simulations.benchmarks.tcga_brca_explore --data ../shared/data/tcga_brca --grid grid.json --seeds 1,2

grid.json: a list of settings, each `{"model": "cox" | "discrete", "strategy": ..., "lr": ..., "std": 0 | 1}` plus
any of `clip` and `batch` with `eps` (a DP run at that ε), `rounds`, `wd`, `slr` and `avg` (see `brca_study`).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer

from simulations.benchmarks import tcga_brca


def explore(data: Path, work: Path, grid: list[dict[str, Any]], seeds: list[int], folds: int) -> dict[str, Any]:
    """Each setting's cross-validated C-index per training seed, and their mean."""
    keys = []
    for entry in grid:
        setting = {k: v for k, v in entry.items() if k not in ("model", "eps")}
        name = "-".join(f"{k}{v}" for k, v in setting.items())
        # evaluate() looks settings up by name in the benchmark's candidate tables.
        (tcga_brca.DP_CANDIDATES if entry.get("eps") else tcga_brca.CANDIDATES)[name] = setting
        keys.append((entry["model"], setting["strategy"], name, entry.get("eps")))
    runs = [(model, strategy, name, seed, eps) for model, strategy, name, eps in keys for seed in seeds]
    scores = tcga_brca.cross_validate(tcga_brca.read_brca(data), work, folds, runs)
    out = {}
    for model, strategy, name, eps in keys:
        per_seed = [scores[(model, strategy, name, seed, eps)] for seed in seeds]
        label = f"{model}-{name}" + (f"-eps{eps:g}" if eps else "")
        out[label] = {"cv_c_index": float(np.mean(per_seed)), "per_seed": per_seed}
    return out


def main(
    data: Annotated[Path, typer.Option(help="Folder with FLamby's brca.csv and train_test_split.csv")],
    grid: Annotated[Path, typer.Option(help="JSON list of settings to cross-validate")],
    seeds: Annotated[str, typer.Option(help="Training seeds")] = "1",
    folds: Annotated[int, typer.Option(help="Cross-validation folds of the train rows")] = 3,
    out: Annotated[Path | None, typer.Option(help="Write the results as JSON here")] = None,
) -> None:
    """Cross-validate every setting of the grid and print them best first."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        results = explore(data, Path(tmp), json.loads(grid.read_text()), [int(s) for s in seeds.split(",")], folds)
    for name, r in sorted(results.items(), key=lambda item: -item[1]["cv_c_index"]):
        print(f"{r['cv_c_index']:.3f}  {name}  per seed {[round(v, 3) for v in r['per_seed']]}")
    if out:
        out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    typer.run(main)
