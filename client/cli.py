"""`medfed-site`: the hospital IT team's command: check its data, audit a model, start the site agent."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from client.audit import audit_site
from client.site import SiteConfig, load_site_data
from shared.config import load_study
from shared.errors import MedfedError

console = Console(soft_wrap=True)
cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.command()
def check(
    data: Annotated[Path, typer.Option(help="The site's data file")],
    study: Annotated[Path, typer.Option(help="The study TOML the site is asked to join")],
    site: Annotated[str, typer.Option(help="This site's name")] = "site",
) -> None:
    """Pre-flight check: validate the site's data against a study and print a report. Nothing is sent."""
    try:
        config = load_study(study)
        report = load_site_data(SiteConfig(site, data), config).report
    except MedfedError as exc:
        console.print(f"[red]not ready:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    table = Table(title=f"pre-flight report for site '{site}' (kept on this machine)", show_header=False)
    for key, value in report.items():
        table.add_row(key, str(value))
    console.print(table)
    console.print("[green]ready[/]: the data fits the study")


@cli.command()
def audit(
    data: Annotated[Path, typer.Option(help="The site's data file")],
    study: Annotated[Path, typer.Option(help="The study TOML (or study.json) the model was trained in")],
    model: Annotated[Path, typer.Option(help="The trained model (model.safetensors)")],
    site: Annotated[str, typer.Option(help="This site's name")] = "site",
) -> None:
    """Privacy audit: membership-inference (loss-threshold) attack AUC on this site's train vs held-out rows."""
    try:
        auc = audit_site(load_study(study), SiteConfig(site, data), model)
    except MedfedError as exc:
        console.print(f"[red]audit failed:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    verdict = "no measurable leak" if auc < 0.55 else "the model reveals who it was trained on"
    console.print(
        f"site '{site}': membership-inference attack AUC {auc:.3f} (0.5 = attacker learns nothing; {verdict})"
    )


@cli.command()
def start() -> None:
    """Start this site's agent (a Flower SuperNode) from a site config file: arrives with issue #6."""
    console.print(
        "medfed-site start is not available yet (tracked in issue #6); use flower-supernode with "
        '--node-config \'site="..." data-path="..."\' meanwhile.'
    )
    raise typer.Exit(2)


def main() -> None:
    """Console entry point."""
    cli()
