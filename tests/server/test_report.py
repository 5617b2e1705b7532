"""report.html: its sections and inline figures, drawn in a real browser, and `medfed-server report`."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from server import report as report_module
from server.cli import cli
from server.report import REPORT, ReportRefresher, write_report
from tests.server.studyfolder import EXPECTED_FIGURES, write_study_folder

SECTIONS = ["study", "learning", "privacy", "final", "curves", "comparison", "events", "timing"]


class Page(HTMLParser):
    """The section ids, images and script/link sources of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.external: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section":
            self.sections.append(found["id"])
        if tag == "img":
            self.images.append(found)
        self.external += [v for k, v in attrs if k in ("src", "href") and v and not v.startswith("data:")]


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """A finished study's folder with its report written."""
    folder = write_study_folder(tmp_path_factory.mktemp("study"))
    write_report(folder)
    return folder / REPORT


def test_the_report_has_every_section_and_each_figure_inline(report):
    text = report.read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == SECTIONS
    assert [img["alt"] for img in page.images] == list(EXPECTED_FIGURES)
    for img in page.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        assert base64.b64decode(img["src"][len(prefix) :])[:8] == b"\x89PNG\r\n\x1a\n"
    assert page.external == []  # self-contained: nothing to fetch
    assert "0.900 (0.800–0.970)" in text  # the site's interval beside its figure
    assert "site &#x27;tiny&#x27;: budget exhausted" in text  # the refusal, with its site and reason


def test_the_comparison_marks_what_the_closing_table_marks(report):
    """A site too small to score and a model predicting one class are flagged, with why, as in the terminal."""
    text = report.read_text(encoding="utf-8")
    comparison = text[text.index("<section id='comparison'>") :]
    comparison = comparison[: comparison.index("</section>")]
    tiny = comparison[comparison.index("<td>tiny</td>") :].split("</tr>")[0]
    assert tiny.count("<td>unreliable</td>") == 6  # 3 methods x 2 shown metrics
    north = comparison[comparison.index("<td>north</td>") :].split("</tr>")[0]
    assert [c.endswith("*") for c in re.findall(r"<td>([^<]*)</td>", north)[1:]] == [False] * 4 + [True] * 2
    assert "unreliable: site &#x27;tiny&#x27;: held-out split of 3 rows (under 10)" in comparison
    assert "* the local model predicts one class at north: it predicts a single class" in comparison


def test_the_report_renders_in_a_real_browser(report, tmp_path):
    chromium = shutil.which("chromium")
    if chromium is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is missing in CI: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    command = [
        chromium,
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
        "--dump-dom",
        report.as_uri(),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    n = len(EXPECTED_FIGURES)
    assert f'data-figures-loaded="{n}/{n}"' in done.stdout  # the page's own check: every <img> decoded, non-empty
    assert "CONSOLE" not in done.stderr, done.stderr[-2000:]  # the page logs nothing: any console line is an error


def test_medfed_server_report_rewrites_the_page_and_saves_its_figures(report, tmp_path):
    report.unlink()
    result = CliRunner().invoke(cli, ["report", str(report.parent), "--figures", str(tmp_path / "figs")])
    assert result.exit_code == 0, result.output
    assert report.is_file()
    assert sorted(p.stem for p in (tmp_path / "figs").glob("*.png")) == sorted(EXPECTED_FIGURES)


def test_a_site_sending_another_tasks_curves_cannot_swap_the_reports_section(tmp_path):
    """A tabular study's report draws ROC and calibration from score bins, whatever curves a site sent besides."""
    folder = write_study_folder(tmp_path)
    history = json.loads((folder / "history.json").read_text())
    site = next(iter(history["assessments"]))
    history["assessments"][site] |= {"curve-times": [1.0, 2.0], "curve-km": [0.9, 0.8], "curve-predicted": [0.9, 0.7]}
    (folder / "history.json").write_text(json.dumps(history))
    text = write_report(folder).read_text(encoding="utf-8")
    assert "ROC, precision-recall and calibration" in text and "Survival curves" not in text
    assert [img["alt"] for img in Page(text).images] == list(EXPECTED_FIGURES)


def test_medfed_server_report_names_what_is_missing(tmp_path):
    result = CliRunner().invoke(cli, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "study.json" in result.output


def test_a_running_study_redraws_its_report_at_a_bounded_cost_and_never_fails_for_it(tmp_path, monkeypatch, caplog):
    clock, drawn = [100.0], []

    def draw(folder):
        drawn.append(clock[0])
        clock[0] += 2.0  # drawing takes 2 s
        raise RuntimeError("no fonts")

    monkeypatch.setattr(report_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(report_module, "write_report", draw)
    (tmp_path / "history.json").write_text("{}")
    refresher = ReportRefresher(tmp_path)
    for step in (5.0, 16.0, 10.0, 10.0, 2.0):  # seconds between rounds
        clock[0] += step
        refresher.after_round()
    assert drawn == [121.0, 143.0]  # first once the study has run 20 s, then 10 x the 2 s it took after the last
    refresher.draw()  # the end of the study: always
    assert len(drawn) == 3 and "not refreshed: no fonts" in caplog.text
