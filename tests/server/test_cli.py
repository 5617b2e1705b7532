"""`medfed-server validate`: a study is checked before it is submitted."""

from __future__ import annotations

from typer.testing import CliRunner

from server.cli import cli


def test_validate_accepts_a_good_study_and_names_a_bad_field(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text('name = "s"\n[data]\nlabel = "y"\nclasses = [0, 1]\nfeatures = ["a", "b"]\n')
    result = CliRunner().invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0 and "valid" in result.output
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "s"\n[privacy]\nmode = "local"\nepsilon = -1\n')
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 2 and "privacy.epsilon" in result.output and "bad.toml" in result.output
