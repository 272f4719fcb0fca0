"""Progress bars of the long commands: on stderr with their rate, only on a terminal, off on request."""

from __future__ import annotations

import io
import re
import sys

from reflective_search.experiments.progress import progress_bar


# tqdm's rate: "2.50problem/s", or "1.51s/problem" once a unit takes over a second (a loaded machine).
RATE = r"[0-9.]+(problem/s|s/problem)"


class Terminal(io.StringIO):
    """Standard error as a terminal shows it."""

    def isatty(self) -> bool:
        return True


def test_a_bar_shows_its_count_and_rate_on_a_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stderr", Terminal())
    with progress_bar(3, "sampling", "problem") as bar:
        bar.update(3)
    shown = sys.stderr.getvalue()
    assert "sampling: 100%" in shown and "3/3" in shown and re.search(RATE + r"\]", shown)


def test_no_bar_off_a_terminal_or_when_turned_off(monkeypatch):
    for stream, enabled in ((io.StringIO(), True), (Terminal(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        with progress_bar(3, "sampling", "problem", enabled) as bar:
            bar.update(3)
        assert stream.getvalue() == ""


def test_evaluate_search_shows_problems_solved_and_tokens_per_second(monkeypatch, capsys):
    from reflective_search.cli import main

    command = ["evaluate", "search", "--model", "countdown-tiny", "--problems", "2", "--methods", "greedy"]
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert main(command) == 0
    shown = sys.stderr.getvalue()
    assert "greedy: 100%" in shown and "2/2" in shown and re.search(RATE + ", tok/s=", shown)
    table = capsys.readouterr().out
    assert "3 numbers: method | accuracy" in table and "100%" not in table  # results alone on stdout
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert main(command + ["--no-progress"]) == 0
    assert "greedy:" not in sys.stderr.getvalue()
