"""`medfed-server`: the central operator's command: validate studies, provision, start, submit."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from server.audit import record
from server.certificates import RENEW_DAYS, hosts_of
from server.deployment import (
    CONNECTION,
    check_port_free,
    flower_home,
    flwr,
    list_nodes,
    list_runs,
    register_sites,
    superlink_command,
    unregister_removed,
    wait_for_superlink,
)
from server.deployment import submit as submit_study
from server.provision import (
    DEFAULT_PORT,
    Federation,
    add_site,
    address_of,
    inside_git_work_tree,
    key_fingerprint,
    remove_site,
    renew_server_certificate,
)
from server.provision import provision as provision_federation
from server.screening import SITE_KEYS_ENV
from server.status import certificate_lines, format_status, removed_states, site_states, study_runs
from shared.children import dying_with_parent, end
from shared.config import StudyConfig, load_study
from shared.errors import ConfigError, MedfedError
from shared.flower import flower_env
from shared.identity import check_private
from shared.models import MODELS_ENV, offer_file

# Commands that need torch, matplotlib or the tasks import them in their bodies: `status`, `stop`, `start` and
# `--help` then answer in about a second rather than the several seconds those imports take.
console = Console(soft_wrap=True)
cli = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
T = TypeVar("T")


@cli.command()
def validate(study: Annotated[Path, typer.Argument(help="Study TOML file")]) -> None:
    """Check a study config (schema, task options) before submitting it."""
    from shared.initial import beside, initial_weights
    from shared.tasks import get_task  # torch

    try:
        config = load_study(study)
        get_task(config.task).check_study(config)
        secure = config.secure_aggregation(deployed=True)
        initial = beside(config, study)
        initial_weights(config, initial)
    except MedfedError as exc:
        console.print(f"[red]invalid:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc
    console.print(
        f"[green]valid[/]: study '{config.name}', task {config.task}, {config.federation.strategy}, "
        f"{config.federation.rounds} rounds, secure aggregation {'on' if secure else 'off'} in a federation"
    )
    if initial is not None:
        use = "evaluated at every site, nothing trained" if config.federation.rounds == 0 else "round 1 starts from it"
        console.print(
            f"initial model: {initial} (its weights' SHA-256 as pinned; {use})", highlight=False, markup=False
        )
    console.print(_model_size(config), highlight=False)
    # what a site requiring approval approves (medfed-site approve): the same file gives the same digest there
    console.print(f"sha256: {config.digest()}", highlight=False)
    for note in get_task(config.task).study_notes(config):
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)


def _model_size(study: StudyConfig) -> str:
    """The study's model size and the memory training it holds at a site, which each site's policy caps."""
    from client.sitefile import MAX_TRAINING_MIB
    from shared.tasks.footprint import model_footprint

    try:
        size = model_footprint(study)
    except MedfedError as exc:  # a pretrained encoder lives only at the sites that offer it
        return f"model size: measured by each site ({exc})"
    activations = "" if size.activation_bytes is not None else ", one batch's activations not included"
    if size.training_mib > MAX_TRAINING_MIB:
        room = "; [yellow]over the default: a site that keeps it refuses this study[/]"
    else:
        fits = int((MAX_TRAINING_MIB - size.training_mib) / size.data_mib(1))
        room = (
            f"; an example takes {size.example_bytes:,} bytes at the study's sizes, so under the default a site "
            f"may hold up to {fits:,} of them (each counted twice, for loading)"
        )
    return (
        f"model: {size.parameters:,} parameters, {size.trainable:,} trained; training holds about "
        f"{size.training_mib:,.1f} MiB at a site{activations} (a site refuses above its policy.max-training-mib, "
        f"{MAX_TRAINING_MIB:g} by default){room}"
    )


@cli.command("study-template")
def study_template(
    schemas: Annotated[list[Path], typer.Argument(help="Sites' schema files (medfed-site check --schema-out)")],
    out: Annotated[Path | None, typer.Option(help="Write the study TOML here (default: print it)")] = None,
    name: Annotated[str, typer.Option(help="The study's name")] = "study",
) -> None:
    """Write a study's data section (label, classes, features, categories) from sites' schemas, once they agree."""
    from server.template import template_toml  # torch, through the tabular task

    text = _run(lambda: template_toml(name, {str(p): _read_schema(p) for p in schemas}))
    if out is None:
        print(text, end="")
        return
    _run(lambda: _write_text(out, text))
    console.print(
        f"study template written to {out}: review it, then `medfed-server validate {out}`",
        highlight=False,
        markup=False,
    )


def _write_text(path: Path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as exc:
        raise ConfigError("out", f"cannot write {path} ({exc.strerror})", source="study-template") from exc


def _read_schema(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError("schema", f"cannot be read as JSON ({exc})", source=f"schema file {path}") from exc


@cli.command()
def provision(
    out: Annotated[Path, typer.Option(help="New federation folder (CA, server kit, site kits)")],
    host: Annotated[list[str], typer.Option(help="Host name or IP the sites connect to (repeat for more SANs)")],
    site: Annotated[list[str], typer.Option(help="A hospital's name (repeat per hospital)")],
    port: Annotated[int, typer.Option(help="The SuperLink's port")] = DEFAULT_PORT,
) -> None:
    """Create the federation CA, the SuperLink certificate and key, and one startup kit per hospital."""
    fed = _run(lambda: provision_federation(out, host, site, port))
    _run(lambda: record(fed, "provision", hosts=host, sites=fed.site_names(), port=port))
    repository = inside_git_work_tree(fed.root)
    if repository is not None:
        console.print(
            f"[bold yellow]warning:[/] {fed.root} is inside the git work tree {repository}: its private keys must "
            "never be committed. The federation's .gitignore leaves them out; better, move the folder out.",
            highlight=False,
        )
    console.print(
        f"federation provisioned in {fed.root}: server kit {fed.server}, sites {', '.join(fed.site_names())}",
        markup=False,
    )
    console.print("hand each hospital its folder under sites/; keep ca/ (the CA key) offline")


@cli.command("add-site")
def add_site_command(
    federation: Annotated[Path, typer.Option(help="The federation folder")],
    name: Annotated[str, typer.Argument(help="The new hospital's name")],
) -> None:
    """Provision one more hospital; then `medfed-server register` while the SuperLink runs."""
    kit = _run(lambda: add_site(federation, name))
    fed = Federation(federation)
    _run(lambda: record(fed, "add-site", site=name, key=key_fingerprint(fed.site_keys()[name])))
    console.print(
        f"site kit written to {kit}; register it with: medfed-server register --federation {federation}", markup=False
    )


@cli.command("remove-site")
def remove_site_command(
    federation: Annotated[Path, typer.Option(help="The federation folder")],
    name: Annotated[str, typer.Argument(help="The hospital leaving, or whose key was lost or leaked")],
) -> None:
    """Take a hospital out: unregister its key from the SuperLink (or at its next start) and archive its kit."""
    fed = Federation(federation)
    revoked = _run(lambda: remove_site(fed.root, name))
    _run(lambda: record(fed, "remove-site", site=name, key=revoked.stem))
    console.print(
        f"site '{name}' removed: its key is on the federation's removed list ({revoked})", highlight=False, markup=False
    )
    try:
        home = flower_home(fed, address_of(fed))
        done = unregister_removed(fed, home, list_nodes(home))
    except MedfedError as exc:
        console.print(
            f"[bold red]not unregistered yet:[/] {escape(str(exc))}. A SuperLink that holds its key lets it in until "
            "`medfed-server start` starts it, or `medfed-server register` reaches it: both unregister removed keys.",
            highlight=False,
        )
        raise typer.Exit(1) from None
    if done:
        _run(lambda: record(fed, "unregister", keys=done))
    for label in done:
        console.print(
            f"site '{name}': its node (key {label}) is unregistered; the SuperLink refuses it from now on", markup=False
        )
    if not done:
        console.print(f"site '{name}': the SuperLink held no registration for its key", markup=False)


@cli.command("renew-certificate")
def renew_certificate(
    federation: Annotated[Path, typer.Option(help="The federation folder (with ca/ca.key back in place)")],
    host: Annotated[
        list[str] | None, typer.Option(help="Host name or IP the certificate names (repeat); default: the current ones")
    ] = None,
) -> None:
    """Issue the SuperLink a new TLS certificate from the federation CA (sites need nothing new); then restart it."""
    cert = _run(lambda: renew_server_certificate(federation, host))
    names = ", ".join(hosts_of(cert))
    until = f"{cert.not_valid_after_utc:%Y-%m-%d}"
    _run(lambda: record(Federation(federation), "renew-certificate", hosts=hosts_of(cert), until=until))
    console.print(
        f"server certificate renewed for {names}, valid until {until} UTC. Restart the "
        "server (medfed-server start) to use it; the sites trust the same CA and need nothing new. Put ca/ca.key "
        "back offline.",
        highlight=False,
    )


@cli.command()
def start(
    federation: Annotated[Path, typer.Option(help="The federation folder")],
    listen: Annotated[str, typer.Option(help="Interface to listen on")] = "0.0.0.0",
    insecure: Annotated[bool, typer.Option(help="No TLS and no site authentication: local tests only")] = False,
) -> None:
    """Start the SuperLink (TLS and site authentication on) and register every provisioned site's key."""
    fed = Federation(federation)
    address = _run(lambda: address_of(fed))
    port = int(address.rsplit(":", 1)[1])
    if insecure:
        console.print("[bold yellow]warning: --insecure: no TLS, no site authentication. Never with patient data.[/]")
    # The ServerApp binds each reply to the site whose provisioned key signed it (server/screening.py).
    keys = {} if insecure else {SITE_KEYS_ENV: str((fed.server / "site-keys").resolve())}
    if (fed.server / "models.toml").is_file():  # pretrained folders the server offers, by name
        keys[MODELS_ENV] = str((fed.server / "models.toml").resolve())
    if not insecure:
        _run(lambda: check_private(fed.server / "server.key", "server.key", "server kit"))
        for line, left in _run(lambda: certificate_lines(fed)):
            if left < RENEW_DAYS:
                console.print(f"[bold yellow]warning:[/] {line}", highlight=False)
            if left < 0:  # every site's TLS handshake would fail, each site saying only that
                raise typer.Exit(2)
    _run(lambda: check_port_free(listen, port))
    link = subprocess.Popen(
        dying_with_parent(superlink_command(fed, listen, port, insecure)), cwd=fed.server, env=flower_env(**keys)
    )
    signal.signal(signal.SIGTERM, lambda *_: link.terminate())
    try:  # a start that fails (the port, a site's key) ends its SuperLink too: a leftover would hold the port
        _run(lambda: wait_for_superlink(link, f"127.0.0.1:{port}" if listen == "0.0.0.0" else f"{listen}:{port}", 60))
        home = flower_home(fed, address, insecure)
        _run(lambda: record(fed, "start", address=address, listen=listen, insecure=insecure, pid=link.pid))
        if not insecure:
            _registered(fed, _run(lambda: register_sites(fed, home)))
        console.print(
            f"SuperLink running at {address} (PID {link.pid}); study outputs go to {fed.server / 'outputs'}",
            markup=False,
        )
        link.wait()
    except KeyboardInterrupt:
        pass
    finally:
        end([link])
        with contextlib.suppress(MedfedError):  # the start's own error, if any, is the one to show
            record(fed, "server-stopped", pid=link.pid, code=link.returncode)


@cli.command()
def register(federation: Annotated[Path, typer.Option(help="The federation folder")]) -> None:
    """Register provisioned sites' keys with the running SuperLink (after `add-site`)."""
    fed = Federation(federation)
    home = flower_home(fed, _run(lambda: address_of(fed)))
    _registered(fed, _run(lambda: register_sites(fed, home)))


def _registered(fed: Federation, outcome: dict[str, str]) -> None:
    """Print each site's registration and audit what changed."""
    for name, state in outcome.items():
        console.print(f"site '{name}': {state}", markup=False)
    changed = {name: state for name, state in outcome.items() if state in ("registered", "unregistered")}
    if changed:
        _run(lambda: record(fed, "register", sites=changed))


@cli.command()
def submit(
    federation: Annotated[Path, typer.Option(help="The federation folder")],
    study: Annotated[Path, typer.Option(help="Study TOML (the same file a simulation takes)")],
    stream: Annotated[bool, typer.Option(help="Follow the study's log until it ends")] = True,
    insecure: Annotated[bool, typer.Option(help="The SuperLink was started --insecure")] = False,
) -> None:
    """Submit a study to the running federation; resubmitting a stopped study resumes it."""
    from shared.initial import beside, initial_weights
    from shared.tasks import get_task  # torch

    fed = Federation(federation)
    config = _run(lambda: load_study(study))
    _run(lambda: get_task(config.task).check_study(config))
    _run(lambda: config.secure_aggregation(deployed=True))
    initial = beside(config, study)
    _run(lambda: initial_weights(config, initial))
    home = flower_home(fed, _run(lambda: address_of(fed)), insecure)
    run = _run(lambda: submit_study(home, config, stream, initial))
    _run(lambda: record(fed, "submit", study=config.name, file=str(study.resolve()), study_sha256=config.digest()))
    if stream:
        raise typer.Exit(run.wait())
    console.print(run.stdout.strip())


@cli.command()
def status(
    federation: Annotated[Path, typer.Option(help="The federation folder")],
    insecure: Annotated[bool, typer.Option(help="The SuperLink was started --insecure")] = False,
) -> None:
    """The provisioned sites (online or offline, last contact) and each study's status, as plain text."""
    fed = Federation(federation)
    home = flower_home(fed, _run(lambda: address_of(fed)), insecure)
    nodes = _run(lambda: list_nodes(home))
    runs = study_runs(fed, _run(lambda: list_runs(home)))
    # plain: the same in a terminal and a pipe
    certificates = [] if insecure else [line for line, _ in _run(lambda: certificate_lines(fed))]
    print(format_status(site_states(fed, nodes), runs, removed_states(fed, nodes), certificates))


@cli.command()
def stop(
    federation: Annotated[Path, typer.Option(help="The federation folder")],
    run_id: Annotated[str, typer.Argument(help="The run to stop (see `medfed-server status`)")],
    insecure: Annotated[bool, typer.Option(help="The SuperLink was started --insecure")] = False,
) -> None:
    """Stop a running study; its last completed round stays saved and a resubmission resumes from it."""
    fed = Federation(federation)
    result = _run(lambda: flwr(flower_home(fed, _run(lambda: address_of(fed)), insecure), "stop", run_id, CONNECTION))
    if result.returncode == 0:
        _run(lambda: record(fed, "stop", run=run_id))
    console.print((result.stdout + result.stderr).strip())
    raise typer.Exit(result.returncode)


@cli.command()
def export(
    folder: Annotated[Path, typer.Argument(help="A study's output folder (study.json, model.safetensors)")],
    format: Annotated[str, typer.Option("--format", help="onnx")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Write the model here (default: model.onnx in the folder)")] = None,
    models: Annotated[
        Path | None, typer.Option(help="A pretrained encoder's study: the server kit's models.toml naming its folder")
    ] = None,
) -> None:
    """Export the study's final model (ONNX: tabular, CNN, ResNet, U-Net, text Transformer or pretrained encoder,
    survival), checked against torch with onnxruntime before it is kept."""
    from server.export import export_model  # torch and the tasks

    if models is not None:
        _run(lambda: offer_file(models))
    exported = _run(lambda: export_model(folder, format, out))
    console.print(
        f"exported to {exported.path}: input 'input' (batch first), output 'output': {exported.output}; "
        f"onnxruntime within {exported.max_difference:.1e} of torch",
        highlight=False,
    )


@cli.command()
def report(
    output_dir: Annotated[Path, typer.Argument(help="A study's output folder")],
    figures: Annotated[Path | None, typer.Option(help="Also save each figure as a PNG in this folder")] = None,
) -> None:
    """Regenerate a study's report.html (and its model card, once it has a model) from its saved outputs."""
    from server.report import write_report  # torch, matplotlib and the tasks

    page = _run(lambda: write_report(output_dir, figures))
    console.print(
        f"report written to {page}" + (f", its figures to {figures}" if figures else ""), highlight=False, markup=False
    )


def _run(action: Callable[[], T]) -> T:
    """Run an action; a MedfedError becomes a one-line message and exit code 2, never a traceback."""
    try:
        return action()
    except MedfedError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from exc


def main() -> None:
    """Console entry point."""
    cli()
