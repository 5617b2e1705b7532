"""The model card states what the study's own outputs hold: ε, counts, intervals, audit and hashes."""

from __future__ import annotations

import hashlib
import json

from server.history import site_epsilons
from server.modelcard import CARD, card_markdown, write_model_card
from server.saved import SavedStudy
from tests.server.studyfolder import SITES, write_study_folder


def test_the_model_card_matches_the_study_outputs(tmp_path):
    folder = write_study_folder(tmp_path)
    write_model_card(SavedStudy.read(folder))
    card = json.loads((folder / f"{CARD}.json").read_text())
    history = json.loads((folder / "history.json").read_text())
    summary = json.loads((folder / "summary.json").read_text())
    assert card["privacy"]["epsilon-spent"] == site_epsilons(history["metrics"]) == {s: 2.2 for s in SITES}
    assert card["privacy"]["delta"] == 1e-5 and card["privacy"]["accountant"] == "prv"
    assert "patient" in card["privacy"]["unit-protected"] and card["privacy"]["secure-aggregation"] is False
    assert {s: d["training-examples"] for s, d in card["data"].items()} == SITES
    assert card["data"]["south"]["held-out-examples"] == 30
    counts = history["assessments"]["north"]["class-counts"]
    assert list(card["data"]["north"]["training-class-counts"].values()) == counts
    assert card["data"]["tiny"]["training-class-counts"] is None  # the site sent none: not made up
    assert card["metrics"]["north"]["accuracy"] == {"value": 0.9, "ci95": [0.8, 0.97]}
    assert card["membership-inference-audit"] == {s: p["mia-auc"] for s, p in summary["privacy"].items()}
    assert any("'tiny'" in item and "unreliable" in item for item in card["limitations"])
    for name, file in (("model", "model.safetensors"), ("study", "study.json")):
        assert card["sha256"][name] == hashlib.sha256((folder / file).read_bytes()).hexdigest()
    assert set(card["versions"]) == {"medfed", "flower", "torch", "opacus"}
    text = (folder / f"{CARD}.md").read_text()
    assert card["sha256"]["model"] in text and "north 2.200" in text and "0.900 (0.800–0.970)" in text


def test_a_card_whose_sites_send_no_class_counts_has_no_such_column(tmp_path):
    """A survival study has no classes, and a segmentation study's sites send no counts: no column of 'not reported'."""
    folder = write_study_folder(tmp_path)
    write_model_card(SavedStudy.read(folder))
    card = json.loads((folder / f"{CARD}.json").read_text())
    assert "training class counts |" in card_markdown(card)
    for data in card["data"].values():
        data["training-class-counts"] = None
    text = card_markdown(card)
    assert "| site | training examples | held-out examples |\n|---|---:|---:|\n| north | 40 |" in text
    assert "class counts" not in text.lower() and "not reported" not in text


def test_a_card_without_an_audit_says_why(tmp_path):
    """A simulation whose every site refused the study once read "Not run (medfed-sim runs it ...)"."""
    folder = write_study_folder(tmp_path)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "privacy": {s: {} for s in SITES}}))
    write_model_card(SavedStudy.read(folder))
    assert (
        "Not run: no round's model reached a site, so the saved model is the untrained start"
        in (folder / f"{CARD}.md").read_text()
    )
    (folder / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "privacy"}))
    write_model_card(SavedStudy.read(folder))
    card = json.loads((folder / f"{CARD}.json").read_text())
    assert card["membership-inference-audit"].startswith("medfed-sim runs it against each simulated site")
    assert "Not run: medfed-sim runs it against each simulated site;" in (folder / f"{CARD}.md").read_text()
