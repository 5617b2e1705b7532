"""A study TOML written from the sites' shared schemas: what `medfed-server study-template` produces."""

from __future__ import annotations

from typing import Any

import tomli_w

from shared.config import KNOWN_TASKS, StudyConfig
from shared.errors import ConfigError
from shared.tasks import get_task
from shared.tasks.schedule import schedule_sections
from shared.tasks.tabular.schema import imputing_sites, rare_left_out


def template_toml(name: str, schemas: dict[str, dict[str, Any]]) -> str:
    """The study (name, task, agreed [data], the task's default schedule) as TOML, checked to load as a valid study;
    schemas by source file."""
    if not schemas:
        raise ConfigError("schema", "give at least one site's schema file")
    for source, schema in schemas.items():
        if not isinstance(schema, dict) or schema.get("task") not in KNOWN_TASKS:
            raise ConfigError("schema", "is not a schema from `medfed-site check --schema-out`", source)
    tasks = sorted({schema["task"] for schema in schemas.values()})
    if len(tasks) > 1:
        raise ConfigError("schema", f"the schemas are of different tasks ({', '.join(tasks)}): a study has one")
    task = get_task(tasks[0])
    try:
        data, advice = task.study_template(schemas)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a schema file comes from a site: untrusted
        raise ConfigError("schema", f"a schema file is malformed ({type(exc).__name__}: {exc})") from exc
    study = {"name": name, "task": task.name, "data": data, **schedule_sections(task.name, None)}  # no row counts
    task.check_study(StudyConfig.from_dict(study))
    sites = ", ".join(sorted(s["site"] for s in schemas.values()))
    header = (
        f"# Study template from the schemas of sites {sites} (medfed-server study-template).\n{advice}"
        f"# [federation] and [train]: FedAvg with the {task.name} task's default schedule, the one medfed-sim gives\n"
        '# a table nobody has tuned (README, "Defaults").\n'
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
