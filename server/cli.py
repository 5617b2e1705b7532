"""`medfed-server`: the central operator's command: validate studies, provision, start, submit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.config import load_study
from shared.errors import MedfedError
from shared.tasks import get_task

console = Console(soft_wrap=True)
cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.command()
def validate(study: Annotated[Path, typer.Argument(help="Study TOML file")]) -> None:
    """Check a study config (schema, task options) before submitting it."""
    try:
        config = load_study(study)
        get_task(config.task).check_study(config)
    except MedfedError as exc:
        console.print(f"[red]invalid:[/] {exc}", highlight=False)
        raise typer.Exit(2) from exc
    console.print(
        f"[green]valid[/]: study '{config.name}', task {config.task}, {config.federation.strategy}, "
        f"{config.federation.rounds} rounds"
    )


def _later(name: str) -> None:
    console.print(f"medfed-server {name} is not available yet (tracked in issue #6).")
    raise typer.Exit(2)


@cli.command()
def provision() -> None:
    """Create the federation CA, server certificate and a startup kit per hospital: arrives with issue #6."""
    _later("provision")


@cli.command()
def start() -> None:
    """Start the SuperLink with TLS and site authentication: arrives with issue #6."""
    _later("start")


@cli.command()
def submit() -> None:
    """Submit a study to the running federation and follow its rounds: arrives with issue #6."""
    _later("submit")


def main() -> None:
    """Console entry point."""
    cli()
