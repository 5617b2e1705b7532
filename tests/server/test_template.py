"""Schemas from the sites' pre-flight check become a study the sites' data fits; a disagreeing site is named."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from client.cli import cli as site_cli
from client.site import preflight
from client.sitefile import load_site_file
from server.cli import cli as server_cli
from shared.config import load_study
from shared.tasks.schedule import default_schedule
from tests.shared.tasks.multimodal.patients import OMICS, write_site
from tests.shared.tasks.survival.tables import survival_table
from tests.shared.tasks.tabular.test_schema import table

SITE = 'name = "{name}"\nserver = "fl.example.org:9092"\nprivate-key = "k.key"\n[data]\npath = "{data}"\n'
TABULAR = 'task = "tabular"\nlabel = "outcome"\n'


def site_schema(tmp_path, name: str, frame, data: str = "", task: str = TABULAR) -> str:
    """Write the site's table and site.toml (`task`: its task and outcome lines, `data`: more [data] lines), and run
    `medfed-site check --schema-out`; the schema's path."""
    kit = tmp_path / name
    kit.mkdir()
    frame.to_csv(kit / "data.csv", index=False)
    (kit / "site.toml").write_text(SITE.format(name=name, data=kit / "data.csv") + task + data)
    out = kit / "schema.json"
    result = CliRunner().invoke(site_cli, ["check", "--config", str(kit / "site.toml"), "--schema-out", str(out)])
    assert result.exit_code == 0, result.output
    return str(out)


def test_sites_schemas_round_trip_into_a_study_their_data_fits(tmp_path):
    schemas = [site_schema(tmp_path, "north", table(rare="F")), site_schema(tmp_path, "south", table(rare="M"))]
    assert "age" in json.loads(open(schemas[0]).read())["columns"]
    out = tmp_path / "study.toml"
    result = CliRunner().invoke(server_cli, ["study-template", *schemas, "--out", str(out), "--name", "trial"])
    assert result.exit_code == 0, result.output
    study = load_study(out)
    assert study.data["features"] == ["age", "sex", "stage"] and study.data["categorical"] == {"sex": ["F", "M"]}
    assert "missing" not in study.data  # no site asked for anything but the default
    schedule = default_schedule("tabular", None)
    assert (study.federation.strategy, study.federation.rounds) == ("fedavg", schedule.rounds)
    assert (study.train.local_epochs, study.train.lr, study.train.batch_size) == (
        schedule.local_epochs,
        schedule.lr,
        schedule.batch_size,
    )
    for name in ("north", "south"):
        report = preflight(load_site_file(tmp_path / name / "site.toml"), study)
        assert report["rows-used"] > 0


def test_the_template_says_which_sites_left_rare_labels_out(tmp_path):
    schemas = [site_schema(tmp_path, "north", table(rare="X")), site_schema(tmp_path, "south", table(rare="M"))]
    result = CliRunner().invoke(server_cli, ["study-template", *schemas])
    assert result.exit_code == 0, result.output
    assert "# 'sex': site(s) north left out labels seen fewer than their min-cell times" in result.output
    assert "X" not in result.output.split("[data]")[1]


def test_a_site_that_imputes_gets_a_study_that_imputes_and_is_named(tmp_path):
    """A site whose rows lack values imputes them (its site.toml); a study that drops those rows it would refuse."""
    gaps = table(rare="M")  # no label the study would not list
    gaps.loc[: len(gaps) - 5, "age"] = None  # all but 4 rows lack an age: dropping them leaves too few
    north = site_schema(tmp_path, "north", table())
    south = site_schema(tmp_path, "south", gaps, 'missing = "impute"\n')
    assert json.loads(open(south).read())["missing"] == "impute" and "missing" not in json.loads(open(north).read())
    out = tmp_path / "study.toml"
    result = CliRunner().invoke(server_cli, ["study-template", north, south, "--out", str(out), "--name", "trial"])
    assert result.exit_code == 0, result.output
    assert '# missing = "impute": site(s) south impute a missing feature value' in out.read_text()
    study = load_study(out)
    assert study.data["missing"] == "impute"
    assert preflight(load_site_file(tmp_path / "south" / "site.toml"), study)["rows-used"] == len(gaps)


def test_a_site_without_a_column_is_named(tmp_path):
    north = site_schema(tmp_path, "north", table())
    east = site_schema(tmp_path, "east", table().drop(columns="stage"))
    result = CliRunner().invoke(server_cli, ["study-template", north, east])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "'columns.stage' is at site 'north' but not at site 'east'" in " ".join(result.output.split())


def test_survival_sites_schemas_make_a_study_their_data_fits_once_horizons_are_added(tmp_path):
    task = 'task = "survival"\ntime = "days"\nevent = "died"\n'
    schemas = [
        site_schema(tmp_path, n, survival_table(80, seed=i), task=task) for i, n in enumerate(["north", "south"])
    ]
    out = tmp_path / "study.toml"
    result = CliRunner().invoke(server_cli, ["study-template", *schemas, "--out", str(out), "--name", "trial"])
    assert result.exit_code == 0, result.output
    assert "# Add horizons" in out.read_text()
    study = load_study(out)
    assert study.task == "survival" and study.data["time"] == "days" and study.data["features"] == ["age", "stage"]
    assert study.train.lr == default_schedule("survival", None).lr != default_schedule("tabular", None).lr
    for name in ("north", "south"):
        assert preflight(load_site_file(tmp_path / name / "site.toml"), study)["events"] > 0
    mixed = CliRunner().invoke(server_cli, ["study-template", schemas[0], site_schema(tmp_path, "east", table())])
    assert mixed.exit_code == 2 and "different tasks (survival, tabular): a study has one" in mixed.output


def test_multimodal_sites_holding_different_modalities_get_one_study_each_of_them_fits(tmp_path):
    schemas = []
    for name, drop in (("north", ["note", *OMICS]), ("south", ["image"])):
        kit = tmp_path / name
        path, frame = write_site(kit)
        frame.drop(columns=drop).to_csv(path, index=False)
        task = 'task = "multimodal"\nlabel = "y"\nimage-column = "image"\nnote-column = "note"\n'
        (kit / "site.toml").write_text(SITE.format(name=name, data=path) + task + f"omics = {OMICS}\n")
        out = kit / "schema.json"
        result = CliRunner().invoke(site_cli, ["check", "--config", str(kit / "site.toml"), "--schema-out", str(out)])
        assert result.exit_code == 0, result.output
        schemas.append(str(out))
    out = tmp_path / "study.toml"
    result = CliRunner().invoke(server_cli, ["study-template", *schemas, "--out", str(out), "--name", "trial"])
    assert result.exit_code == 0, result.output
    study = load_study(out)
    assert study.task == "multimodal" and study.data["omics"] == OMICS and study.data["image-column"] == "image"
    for name in ("north", "south"):
        assert preflight(load_site_file(tmp_path / name / "site.toml"), study)["rows-used"] > 0
    broken = json.loads(open(schemas[1]).read()) | {"omics-file": {"columns": OMICS}}  # no file, no id column
    (tmp_path / "broken.json").write_text(json.dumps(broken))
    refused = CliRunner().invoke(server_cli, ["study-template", schemas[0], str(tmp_path / "broken.json")])
    assert (
        refused.exit_code == 2 and "a schema file is malformed" in refused.output and "Traceback" not in refused.output
    )


def test_a_static_split_column_is_the_studys_split_not_a_feature_and_sites_must_agree_on_it(tmp_path):
    def with_fold(frame):
        return frame.assign(fold=["test" if i % 4 == 0 else "train" for i in range(len(frame))])

    split = 'split-column = "fold"\n'
    schemas = [site_schema(tmp_path, n, with_fold(table(rare="M")), split) for n in ("north", "south")]
    assert "fold" not in json.loads(open(schemas[0]).read())["columns"]
    out = tmp_path / "study.toml"
    result = CliRunner().invoke(server_cli, ["study-template", *schemas, "--out", str(out)])
    assert result.exit_code == 0, result.output
    study = load_study(out)
    assert study.data["split-column"] == "fold" and "fold" not in study.data["features"]
    assert preflight(load_site_file(tmp_path / "north" / "site.toml"), study)["rows-used"] > 0
    east = site_schema(tmp_path, "east", table(rare="M"))
    refused = CliRunner().invoke(server_cli, ["study-template", schemas[0], east])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "'split-column' differs between sites ('east' none, 'north' fold)" in said
