"""A study TOML written from the sites' shared schemas: what `medfed-server study-template` produces."""

from __future__ import annotations

from typing import Any

import tomli_w

from shared.config import StudyConfig
from shared.tasks import get_task
from shared.tasks.tabular.schema import agreed_data, imputing_sites, rare_left_out


def template_toml(name: str, schemas: dict[str, dict[str, Any]]) -> str:
    """The study (name, task, agreed [data]) as TOML, checked to load as a valid study; schemas by source file."""
    study = {"name": name, "task": "tabular", "data": agreed_data(schemas)}
    get_task("tabular").check_study(StudyConfig.from_dict(study))
    sites = ", ".join(sorted(s["site"] for s in schemas.values()))
    header = (
        f"# Study template from the schemas of sites {sites} (medfed-server study-template).\n"
        "# Review the classes (class 1 is the positive class), then add [federation], [train], [privacy] and\n"
        "# [model] as the README's study config shows.\n"
    )
    if imputing := imputing_sites(schemas):
        header += (
            f'# missing = "impute": site(s) {", ".join(imputing)} impute a missing feature value from their own train '
            "split rather than drop the row; the study must too, or they refuse it\n"
        )
    for column, holders in rare_left_out(schemas).items():
        header += (
            f"# '{column}': site(s) {', '.join(holders)} left out labels seen fewer than their min-cell times; "
            "their data fits only if the list below names those labels too\n"
        )
    return header + tomli_w.dumps(study)
