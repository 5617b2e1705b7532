"""`medfed-site`: the hospital IT team's command: check its data, audit a model, start the site agent."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from client.agent import connection_failure, run_agent, run_preflight, worker_tasks_folder
from client.checkreport import check_report
from client.site import DEFAULT_LEDGER_DIR, SiteConfig
from client.sitefile import load_site_file
from shared.config import MIN_CELL, load_study
from shared.errors import ConfigError, MedfedError
from shared.logs import FORMAT, show_medfed_logs
from shared.privacy.journal import Verdict, recover, verify

# torch and the tasks load only in the commands that read data or a model (check, audit, predict, the worker): the
# agent that `start` leaves running supervises two processes and needs neither.

console = Console(soft_wrap=True)
cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@cli.command()
def check(
    config: Annotated[Path | None, typer.Option(help="This site's site.toml (data, policy, kit)")] = None,
    data: Annotated[Path | None, typer.Option(help="Without --config: the site's data file")] = None,
    study: Annotated[Path | None, typer.Option(help="A study TOML to check the data against")] = None,
    site: Annotated[str, typer.Option(help="Without --config: this site's name")] = "site",
    schema_out: Annotated[
        Path | None, typer.Option(help="With --config: write the table's shareable schema here (see README)")
    ] = None,
    min_cell: Annotated[
        int,
        typer.Option(
            help="A category seen fewer times is left out of the schema; a smaller count of a multimodal table's "
            "rows is shown only as 'fewer than N'"
        ),
    ] = MIN_CELL,
    image_column: Annotated[
        str | None, typer.Option(help="Describing --data: its multimodal column of image paths")
    ] = None,
    note_column: Annotated[str | None, typer.Option(help="Describing --data: its column of clinical notes")] = None,
    omics: Annotated[str | None, typer.Option(help="Describing --data: comma-separated omics columns")] = None,
    omics_file: Annotated[
        str | None,
        typer.Option(help="Describing --data: the omics matrix file, relative to --data's folder (with --id-column)"),
    ] = None,
    id_column: Annotated[
        str | None, typer.Option(help="Describing --data: the patient id column of --data and --omics-file")
    ] = None,
) -> None:
    """Pre-flight check: describe the site's data (or check it against a study) and print the report here.

    Nothing is sent anywhere. With --schema-out, the columns, their types and the category labels seen at least
    --min-cell times are written to a file the site may share with the study's coordinator. Describing a multimodal
    table (--image-column, --note-column, --omics, --omics-file): each modality's rows and what would stop training.
    """
    modalities = {
        "image-column": image_column,
        "note-column": note_column,
        "omics": [c.strip() for c in omics.split(",") if c.strip()] if omics else None,
        "omics-file": omics_file,
        "id-column": id_column,
    }
    modalities = {k: v for k, v in modalities.items() if v}
    try:
        report, name, admitted = check_report(config, data, study, site, modalities, min_cell)
        if schema_out is not None:
            _write_schema(config, schema_out, min_cell)
    except MedfedError as exc:
        console.print(f"[red]not ready:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    _print_report(report, name)
    for note in report.get("notes", []):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    for line in admitted:
        console.print(escape(line), highlight=False)
    if schema_out is not None:
        console.print(
            f"schema written to {schema_out}: column names, types and category labels, no counts", markup=False
        )
    console.print("[green]ready[/]: the data fits the study" if study else "[green]ready[/]: the data is readable")


def _write_schema(config: Path | None, out: Path, min_cell: int) -> None:
    if config is None:
        raise ConfigError(
            "schema-out", "needs --config site.toml (the site's name and label column)", "medfed-site check"
        )
    from shared.tasks import get_task

    site_file = load_site_file(config)
    schema = get_task(site_file.task).schema(site_file.data_path, site_file.name, site_file.data_hints, min_cell)
    try:
        out.write_text(json.dumps(schema, indent=2) + "\n")
    except OSError as exc:
        raise ConfigError("schema-out", f"cannot write {out} ({exc.strerror})", "medfed-site check") from exc


def _print_report(report: dict, site: str) -> None:
    table = Table(title=f"pre-flight report for site '{site}' (kept on this machine)", show_header=False)
    for key, value in report.items():
        if key != "notes":  # printed after the table, one line each
            shown = "\n".join(f"{k}: {v}" for k, v in value.items()) if isinstance(value, dict) else str(value)
            table.add_row(key, shown)
    console.print(table)


ConfigOption = Annotated[Path | None, typer.Option("--config", help="This site's site.toml (ledger-dir, key, anchor)")]
LedgerDirOption = Annotated[Path | None, typer.Option(help="Without --config: the site's ledger-dir")]
SiteOption = Annotated[str, typer.Option(help="Without --config: this site's name")]


@cli.command()
def audit(
    study: Annotated[Path, typer.Option(help="The study TOML (or study.json) the model was trained in")],
    model: Annotated[Path, typer.Option(help="The trained model (model.safetensors)")],
    config: Annotated[Path | None, typer.Option("--config", help="This site's site.toml (its data)")] = None,
    data: Annotated[Path | None, typer.Option(help="Without --config: the site's data file")] = None,
    site: SiteOption = "site",
) -> None:
    """Privacy audit: membership-inference (loss-threshold) attack AUC on this site's train vs held-out rows."""
    from client.audit import audit_site

    try:
        if config is not None:
            own = SiteConfig.from_site_file(load_site_file(config))
        elif data is not None:
            own = SiteConfig(site, data)
        else:
            raise ConfigError("config", "give --config site.toml, or --data (and --site)", "medfed-site audit")
        auc = audit_site(load_study(study), own, model)
    except MedfedError as exc:
        console.print(f"[red]audit failed:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    verdict = "no measurable leak" if auc < 0.55 else "the model reveals who it was trained on"
    console.print(
        f"site '{own.name}': membership-inference attack AUC {auc:.3f} (0.5 = attacker learns nothing; {verdict})"
    )


@cli.command()
def start(
    config: Annotated[Path, typer.Option(help="This site's site.toml (data, policy, kit)")],
    insecure: Annotated[bool, typer.Option(help="Without TLS or authentication: for a local test only")] = False,
) -> None:
    """Run the pre-flight check, then start this site's agent (a Flower SuperNode) and join the federation."""
    try:
        site_file = load_site_file(config)
    except MedfedError as exc:
        console.print(f"[red]not starting:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    for required in [] if insecure else [site_file.ca_certificate, site_file.private_key]:
        if not required.is_file():
            console.print(f"[red]not starting:[/] {required} from the site kit is missing", highlight=False)
            raise typer.Exit(2)
    sys.stdout.flush()
    problem = run_preflight(site_file)
    if problem is not None:
        console.print(f"[red]not starting:[/] {problem}", highlight=False)
        raise typer.Exit(2)
    if insecure:
        console.print("[yellow]warning:[/] --insecure: no TLS and no site authentication; never use it with real data")
    if site_file.app_code == "server":
        console.print(
            '[yellow]warning:[/] app-code = "server": this site installs and runs whatever app the server sends; '
            "its policy, privacy cap and ledger then hold only if that app enforces them",
            highlight=False,
        )
    console.print(
        f"site '{site_file.name}' joining {site_file.server}; policy: {site_file.policy}", highlight=False, markup=False
    )
    sys.stdout.flush()
    code, log = run_agent(site_file, insecure)
    if code != 0:
        console.print(
            f"[red]site '{site_file.name}' stopped:[/] {connection_failure(site_file, code, log)}", highlight=False
        )
    raise typer.Exit(code)


@cli.command()
def approve(
    config: Annotated[Path, typer.Option(help="This site's site.toml")],
    study: Annotated[Path | None, typer.Option(help="The study file this site approves, exactly as reviewed")] = None,
    note: Annotated[str, typer.Option(help="The approval's reference, e.g. the review board's decision")] = "",
    revoke: Annotated[str | None, typer.Option(help="Withdraw every approval of the study with this name")] = None,
) -> None:
    """Approve a study for this site (policy.require-approval admits only approved studies), or withdraw one.

    The approval holds the SHA-256 of the study as medfed sends it: a study changed in any setting is another study.
    """
    from client.approvals import approvals_file
    from client.approvals import approve as record_approval
    from client.approvals import revoke as withdraw

    try:
        site_file = load_site_file(config)
        path = approvals_file(site_file.path)
        if revoke is not None:
            withdrawn = withdraw(path, revoke)
            console.print(f"withdrew {withdrawn} approval(s) of study '{escape(revoke)}' in {path}", highlight=False)
            return
        if study is None:
            raise ConfigError("study", "give --study FILE to approve, or --revoke NAME", source="medfed-site approve")
        study_config = load_study(study)
        from shared.tasks import get_task

        get_task(study_config.task).check_study(study_config)
        entry = record_approval(path, study_config, note)
    except MedfedError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    console.print(
        f"study '{entry['study']}' approved at site '{site_file.name}': sha256 {entry['sha256']}", markup=False
    )
    if not site_file.policy.require_approval:
        console.print(
            "[yellow]note:[/] this site's policy.require-approval is false: its agent admits any study its policy "
            "allows; set it to true in site.toml to admit approved studies only",
            highlight=False,
        )


@cli.command()
def status(config: Annotated[Path, typer.Option(help="This site's site.toml")]) -> None:
    """Whether this site's agent runs and is connected, and the last message it received and handled; read here
    from the agent's and worker's status files, nothing is sent. Exit code 1 when the agent is not connected."""
    from client.status import describe

    try:
        site_file = load_site_file(config)
    except MedfedError as exc:
        console.print(f"[red]cannot read the site config:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    busy = len(list(worker_tasks_folder(site_file).glob("*.json")))
    lines, connected = describe(site_file, busy)
    print("\n".join(lines))  # plain: the same in a terminal, a pipe or a monitoring check's log
    if site_file.policy.require_approval:
        from client.approvals import approvals_file, load_approvals

        try:
            names = sorted({a["study"] for a in load_approvals(approvals_file(site_file.path))})
        except MedfedError as exc:
            names = [f"unreadable: {exc}"]
        print(f"approved studies (policy.require-approval): {', '.join(names) or 'none yet'}")
    print(f"privacy spent so far: medfed-site ledger show --config {config}")
    if not connected:
        raise typer.Exit(1)


@cli.command(hidden=True)
def worker(
    config: Annotated[Path, typer.Option(help="This site's site.toml")],
    secret_file: Annotated[Path, typer.Option(help="The secret the agent gave the SuperNode")],
    tasks_dir: Annotated[Path, typer.Option(help="The agent's folder for the messages being handled")],
) -> None:
    """The site worker, started by `medfed-site start`: runs the SuperNode's tasks with this installed medfed."""
    logging.basicConfig(level=logging.INFO, format=FORMAT)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll of the SuperNode otherwise
    site_file = load_site_file(config)
    from client.inflight import Inflight
    from client.status import StatusFile, status_file
    from client.worker import InstalledApp, SiteWorker, oom_first  # Flower's runtime client: only in the worker

    oom_first()

    address, secret = f"127.0.0.1:{site_file.agent_port}", secret_file.read_bytes()
    status = StatusFile(status_file(site_file, "worker"))
    worker = SiteWorker(address, secret, InstalledApp(site_file.name), Inflight(tasks_dir), status)
    worker.answer_interrupted()  # first: the SuperNode waits on these, not on torch
    from client import handlers  # noqa: F401 - torch and the tasks load now, not in the first round
    from shared.privacy import site  # noqa: F401 - and Opacus

    worker.serve()


def main() -> None:
    """Console entry point."""
    # `start` and `worker` log every level through the root logger, into the site's log. The one-off commands show
    # medfed's warnings and errors (a refusal's detail), in medfed's format even once Opacus has configured the root.
    if sys.argv[1:2] not in (["start"], ["worker"]):
        show_medfed_logs(logging.WARNING)
    cli()


ledger = typer.Typer(no_args_is_help=True, help="This site's privacy journal: what was spent, whether it verifies.")
cli.add_typer(ledger, name="ledger")


def _ledger_site(config: Path | None, ledger_dir: Path | None, site: str) -> SiteConfig:
    """The site whose journal a ledger command reads; a bad option or site.toml ends the command with exit 2."""
    try:
        if config is not None:
            return SiteConfig.from_site_file(load_site_file(config))
        if ledger_dir is None:
            raise ConfigError(
                "config", "give --config site.toml, or --ledger-dir and --site", source="medfed-site ledger"
            )
    except MedfedError as exc:
        console.print(f"[red]cannot read the ledger:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    return SiteConfig(site, Path(), ledger_dir=ledger_dir)


@ledger.command()
def show(config: ConfigOption = None, ledger_dir: LedgerDirOption = None, site: SiteOption = "site") -> None:
    """Spend per study and over the site's lifetime (all studies), and whether the journal verifies."""
    from shared.privacy.budget import lifetime_accountant, lifetime_spent, spend_by_study  # Opacus: seconds

    own = _ledger_site(config, ledger_dir, site)
    verdict = verify(own.ledger_files(), own.name)
    rounds = [e for e in verdict.entries if e.get("kind") == "round"]
    table = Table(title=f"privacy spent at site '{own.name}'")
    for column in ("study", "rounds", "δ", "accountant", "ε"):
        table.add_column(column)
    for name, spent in spend_by_study(rounds).items():
        table.add_row(name, str(spent["rounds"]), f"{spent['delta']:g}", spent["accountant"], f"{spent['epsilon']:.3f}")
    console.print(table)
    if rounds:
        delta = rounds[-1]["lifetime-delta"]
        cap = own.privacy_caps().lifetime_cap
        console.print(
            f"lifetime, all studies ({lifetime_accountant(rounds).upper()}): ε {lifetime_spent(rounds, delta):.3f} at "
            f"δ = {delta:.3g}; lifetime cap {cap}",
            highlight=False,
        )
    _print_verdict(verdict)


@ledger.command("verify")
def verify_ledger(config: ConfigOption = None, ledger_dir: LedgerDirOption = None, site: SiteOption = "site") -> None:
    """Check the journal's MAC chain and its anchor; exit 1 when it does not verify."""
    own = _ledger_site(config, ledger_dir, site)
    if not _print_verdict(verify(own.ledger_files(), own.name)):
        raise typer.Exit(1)


@ledger.command("recover")
def recover_ledger(
    reason: Annotated[str, typer.Option(help="Why: recorded in the journal itself and in the site's log")],
    config: ConfigOption = None,
    ledger_dir: LedgerDirOption = None,
    site: SiteOption = "site",
) -> None:
    """The operator's explicit recovery of a journal that does not verify: keeps the old file aside, carries every
    readable entry over, records the reason in the journal and re-anchors it. Never done automatically."""
    try:
        own = _ledger_site(config, ledger_dir, site)
        console.print(recover(own.ledger_files(), own.name, reason), highlight=False)
    except MedfedError as exc:
        console.print(f"[red]not recovered:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc


def _print_verdict(verdict: Verdict) -> bool:
    if verdict.problem:
        console.print(f"[red]does not verify:[/] {verdict.problem}", highlight=False)
        return False
    notes = []
    if verdict.torn:
        notes.append("a partial last line (a write killed midway) will be discarded")
    if verdict.anchor_lags:
        notes.append("its anchor is one entry behind (an interrupted commit) and will be moved forward")
    console.print(f"[green]verifies[/]: {len(verdict.entries)} entries" + "".join(f"; {n}" for n in notes))
    return True


@cli.command()
def predict(
    study: Annotated[Path, typer.Option(help="The study's study.json (or TOML) the model was trained in")],
    model: Annotated[Path, typer.Option(help="The trained model (model.safetensors)")],
    data: Annotated[
        Path,
        typer.Option(
            help="New patients: a table (multimodal: its images and omics file beside it), notes (CSV/JSONL), or a "
            "folder or .npz of images"
        ),
    ],
    out: Annotated[Path, typer.Option(help="Write the predictions here (CSV)")],
    id_column: Annotated[str | None, typer.Option("--id", help="A column of --data to name each row by")] = None,
    config: ConfigOption = None,
    ledger_dir: LedgerDirOption = None,
    site: SiteOption = "site",
) -> None:
    """Apply a study's model to new patients at this site, their rows prepared exactly as its training rows were
    (agreed categories, this site's own standardisation statistics). Runs here and sends nothing."""
    from client.predict import predict_file, write_predictions  # torch and the tasks: only for this command

    own = _ledger_site(config, ledger_dir or DEFAULT_LEDGER_DIR, site)
    try:
        frame = predict_file(load_study(study), model, data, own, id_column)
        write_predictions(frame, out)
    except MedfedError as exc:
        console.print(f"[red]not predicted:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    except OSError as exc:
        console.print(f"[red]not predicted:[/] cannot write {out} ({exc.strerror})", highlight=False)
        raise typer.Exit(2) from exc
    console.print(f"{len(frame)} prediction(s) written to {out}", highlight=False, markup=False)
