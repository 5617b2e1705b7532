"""Progress bars: drawn on stderr in a terminal, never when quiet or when output is piped (as under tests)."""

from __future__ import annotations

from simulations.progress import with_progress


def test_a_piped_run_gets_the_items_and_no_bar(capsys):
    assert list(with_progress(["a", "b", "c"], "configurations")) == ["a", "b", "c"]
    assert capsys.readouterr() == ("", "")


def test_a_terminal_gets_a_bar_on_stderr_unless_quiet(capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: draw as in a terminal
    assert list(with_progress([1, 2, 3], "configurations")) == [1, 2, 3]
    shown = capsys.readouterr()
    assert shown.out == "" and "configurations" in shown.err and "3/3" in shown.err
    assert list(with_progress([1, 2], "configurations", quiet=True)) == [1, 2]
    assert capsys.readouterr() == ("", "")
