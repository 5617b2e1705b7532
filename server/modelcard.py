"""model-card.md and model-card.json beside a study's model: use, data, training, privacy, metrics, limits, hashes."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from server.history import WEIGHTED, site_epsilons
from server.outputs import StudyOutputs
from server.saved import SavedStudy
from shared.arrays import read_model_file
from shared.assessment import SUPPRESSED
from shared.config import StudyConfig
from shared.initial import weights_sha256
from shared.models import file_sha256
from shared.tasks import get_task
from shared.tasks.size import MIN_HELD_OUT

CARD = "model-card"
PACKAGES = {"medfed": "medfed", "flower": "flwr", "torch": "torch", "opacus": "opacus"}
UNIT = {
    "local": "one patient record (example-level DP-SGD at each site, Opacus)",
    "central-server": "one site's whole contribution per round (site-level DP, noise added by the server)",
    "central-client": "one site's whole contribution per round (site-level DP, each site clips its update)",
}


def _not_audited(saved: SavedStudy) -> str:
    """Why the card has no membership-inference audit."""
    if "privacy" in saved.summary:  # medfed-sim audits every simulated site whose data a round's model reached
        return (
            "no round's model reached a site, so the saved model is the untrained start and there was nothing to audit"
        )
    return "medfed-sim runs it against each simulated site; a federation's sites hold the data it needs"


def model_card(saved: SavedStudy) -> dict[str, Any]:
    """The card's content, JSON-ready; every figure comes from the study's saved outputs."""
    study, privacy = saved.study, saved.study.privacy
    final, assessed, examples = saved.final(), saved.assessments(), saved.train_examples()
    final.pop(WEIGHTED, None)
    spent = site_epsilons(saved.history["metrics"])
    audit = {site: p["mia-auc"] for site, p in saved.summary.get("privacy", {}).items() if "mia-auc" in p}
    classes = get_task(study.task).class_names(study)
    sites = sorted(set(final) | set(examples))
    return {
        "study": study.name,
        "status": saved.history["status"],
        "intended-use": {
            "task": study.task,
            "classes": classes,
            "use": f"research on the {study.task} task of study '{study.name}'; validate at the site of use before "
            "any clinical decision rests on it",
        },
        "data": {
            site: {
                "training-examples": examples.get(site),
                "held-out-examples": _int(final.get(site, {}).get("num-examples")),
                "training-class-counts": _class_counts(assessed.get(site, {}), classes),
            }
            for site in sites
        },
        "training": {
            **_initial_model(study),
            "model": study.model,
            "strategy": study.federation.strategy,
            "rounds": study.federation.rounds,
            "local-epochs": study.train.local_epochs,
            "batch-size": study.train.batch_size,
            "optimizer": study.train.optimizer,
            "lr": study.train.lr,
            "seed": study.seed,
        },
        "privacy": {
            "mode": privacy.mode,
            "secure-aggregation": study.secure_aggregation(saved.deployed),
            **(
                {}
                if privacy.mode == "off"
                else {
                    "epsilon-budget": privacy.epsilon,
                    "delta": privacy.delta,
                    "unit-protected": UNIT[privacy.mode],
                    "accountant": privacy.accountant,
                    "epsilon-spent": spent or _central_spent(saved),
                }
            ),
        },
        "metrics": {
            site: {
                metric: {
                    "value": final.get(site, {}).get(metric),
                    "ci95": _interval(assessed.get(site, {}), metric),
                }
                for metric in saved.shown
            }
            for site in sites
        },
        "membership-inference-audit": audit or _not_audited(saved),
        "limitations": _limitations(saved, final),
        "sha256": {
            "model": _sha256(saved.folder / "model.safetensors"),
            "weights": _weights_sha256(saved.folder / "model.safetensors"),
            "study": _sha256(saved.folder / "study.json"),
        },
        "versions": {name: _version(package) for name, package in PACKAGES.items()},
    }


def write_model_card(saved: SavedStudy) -> None:
    """Write model-card.json and model-card.md beside the model, atomically."""
    card = model_card(saved)
    outputs = StudyOutputs(saved.folder)
    outputs.write_json(f"{CARD}.json", card)
    outputs.write_text(f"{CARD}.md", card_markdown(card))


def card_markdown(card: dict[str, Any]) -> str:
    """The card as Markdown, for people."""
    use, privacy = card["intended-use"], card["privacy"]
    lines = [
        f"# Model card: study '{card['study']}'",
        "",
        f"Status: {card['status']}.",
        "",
        "## Intended use",
        f"- Task: {use['task']}" + (f", classes {', '.join(use['classes'])}" if use["classes"] else ""),
        f"- Use: {use['use']}.",
        "",
        "## Data (per site, counts only)",
    ]
    # A task with no classes (survival) or whose sites send no class counts (segmentation) has no such column.
    counted = any(data["training-class-counts"] for data in card["data"].values())
    lines += ["| site | training examples | held-out examples |" + (" training class counts |" if counted else "")]
    lines += ["|---|---:|---:|" + ("---|" if counted else "")]
    for site, data in card["data"].items():
        row = f"| {site} | {_md(data['training-examples'])} | {_md(data['held-out-examples'])} |"
        if counted:
            counts = data["training-class-counts"]
            row += f" {', '.join(f'{k}: {v}' for k, v in counts.items()) if counts else 'not reported'} |"
        lines.append(row)
    if counted:
        lines += ["", "Class counts under the study's report.min-cell are shown as `suppressed`."]
    lines += ["", "## Training"]
    lines += [f"- {key}: {_md(value)}" for key, value in card["training"].items()]
    lines += [
        "",
        "## Privacy",
        f"- Mode: {privacy['mode']}",
        f"- Secure aggregation (SecAgg+): {'on' if privacy['secure-aggregation'] else 'off'}",
    ]
    if privacy["mode"] != "off":
        lines += [
            f"- Budget ε = {privacy['epsilon-budget']:g}, δ = {privacy['delta']:g}, accountant {privacy['accountant']}",
            f"- Unit protected: {privacy['unit-protected']}",
            "- ε spent: " + (", ".join(f"{s} {e:.3f}" for s, e in privacy["epsilon-spent"].items()) or "none recorded"),
        ]
    lines += ["", "## Metrics on each site's held-out split (95 % bootstrap interval computed by the site)"]
    metrics = sorted({m for per_site in card["metrics"].values() for m in per_site})
    lines += [f"| site | {' | '.join(metrics)} |", "|---|" + "---:|" * len(metrics)]
    for site, per_site in card["metrics"].items():
        lines.append(f"| {site} | " + " | ".join(_metric(per_site.get(m)) for m in metrics) + " |")
    audit = card["membership-inference-audit"]
    lines += ["", "## Membership-inference audit"]
    lines.append(
        "Loss-threshold attack AUC per site (0.5: the attack cannot tell training rows from held-out ones): "
        + ", ".join(f"{s} {a:.3f}" for s, a in audit.items())
        if isinstance(audit, dict)
        else f"Not run: {audit}."
    )
    lines += ["", "## Known limitations"]
    lines += [f"- {item}" for item in card["limitations"]] or ["- None recorded."]
    lines += ["", "## Integrity and versions"]
    lines += [f"- SHA-256 of {name}: `{digest}`" for name, digest in card["sha256"].items() if name != "weights"]
    if card["sha256"].get("weights"):
        pin = card["sha256"]["weights"]
        lines += [
            f"- SHA-256 of the model's weights, the pin of a study starting from it (initial-model-sha256): `{pin}`"
        ]
    lines += [f"- {name} {version}" for name, version in card["versions"].items()]
    return "\n".join(lines) + "\n"


def _limitations(saved: SavedStudy, final: dict[str, dict[str, float]]) -> list[str]:
    out = [f"site '{site}': {why}; its metrics are unreliable" for site, why in saved.unreliable.items()]
    listed = set(saved.unreliable)
    for site, metrics in sorted(final.items()):
        if site not in listed and metrics.get("num-examples", MIN_HELD_OUT) < MIN_HELD_OUT:
            out.append(f"site '{site}': held-out split of {metrics['num-examples']:.0f} (under {MIN_HELD_OUT})")
    if not saved.history["status"].startswith("completed"):
        out.append(f"the study did not complete ({saved.history['status']})")
    if saved.study.federation.rounds == 0:
        out.append("the model was trained elsewhere (its initial model); these sites only evaluated it")
    out.append("metrics come from each site's own held-out split of its own patients; other populations may differ")
    return out


def _initial_model(study: StudyConfig) -> dict[str, str]:
    """The pinned model the study started from (or only evaluated), by file name and SHA-256; none for its own."""
    fed = study.federation
    if not fed.initial_model:
        return {}
    return {"initial-model": Path(fed.initial_model).name, "initial-model-sha256": fed.initial_model_sha256}


def _central_spent(saved: SavedStudy) -> dict[str, float]:
    rows = [r for r in saved.history["metrics"] if r["kind"] == "privacy" and "epsilon" in r]
    return {"central": rows[-1]["epsilon"]} if rows else {}


def _class_counts(assessment: dict[str, Any], classes: list[str]) -> dict[str, int | str] | None:
    counts = assessment.get("class-counts")
    if counts is None or len(counts) != len(classes):
        return None
    return {name: "suppressed" if n == SUPPRESSED else int(n) for name, n in zip(classes, counts, strict=True)}


def _interval(assessment: dict[str, Any], metric: str) -> list[float] | None:
    low, high = assessment.get(f"ci-{metric}-low"), assessment.get(f"ci-{metric}-high")
    return None if low is None or high is None else [low, high]


def _sha256(path: Path) -> str | None:
    return file_sha256(path) if path.is_file() else None


def _weights_sha256(path: Path) -> str | None:
    """The SHA-256 of the model's weights: what a study starting from this model pins (initial-model-sha256)."""
    return weights_sha256(read_model_file(path)) if path.is_file() else None


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def _md(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} = {v}" for k, v in value.items())
    return "-" if value is None else str(value)


def _metric(entry: dict[str, Any] | None) -> str:
    if not entry or entry["value"] is None:
        return "-"
    ci = entry["ci95"]
    return f"{entry['value']:.3f}" + (f" ({ci[0]:.3f}–{ci[1]:.3f})" if ci else "")
