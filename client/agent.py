"""The site agent: the local pre-flight check, then the Flower SuperNode started from the site's config file."""

from __future__ import annotations

from typing import Any

from client.site import SiteConfig, load_site_data
from client.sitefile import SiteFile
from shared.config import StudyConfig
from shared.flower import tool
from shared.tasks import get_task


def preflight(site: SiteFile, study: StudyConfig | None = None) -> dict[str, Any]:
    """The site's data report (schema, counts, label balance, missing values, unreadable files), kept local.

    Without a study, the data is described as it is (the site config's [data] hints, e.g. the label column).
    """
    if study is None:
        options = get_task(site.task).infer_data(site.data_path, site.name, site.data_hints)
        study = StudyConfig.from_dict({"name": "pre-flight", "task": site.task, "data": options})
    return load_site_data(SiteConfig.from_site_file(site), study).report


def supernode_command(site: SiteFile, insecure: bool = False) -> list[str]:
    """The `flower-supernode` command line: TLS against the kit's CA and the site's authentication key."""
    command = [
        tool("flower-supernode"),
        "--superlink",
        site.server,
        "--port",
        str(site.agent_port),
        "--node-config",
        f'site-config="{site.path}"',
    ]
    if insecure:
        return [*command, "--insecure"]
    command += ["--root-certificates", str(site.ca_certificate), "--auth-supernode-private-key", str(site.private_key)]
    if site.policy.trusted_publishers:
        command += ["--trusted-entities", site.policy.trusted_publishers]
    return command
