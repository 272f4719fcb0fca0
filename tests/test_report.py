"""The report: means per config point, the scaling fit, JSON, Markdown and the PNG, from hand-made results."""

from __future__ import annotations

import json

import numpy as np
import pytest
from experiment_helpers import run_cli

from reflective_search.errors import ConfigError
from reflective_search.experiments.report import NO_FIT_NOTE, build_report, fit_scaling

PARAMETERS = 100


def record(method: str, point: dict, problem_id: int, seed: int, correct: bool, forwarded: int,
           generated: int, seconds: float) -> dict:
    return {"problem_id": problem_id, "point": point, "seed": seed, "method": method, "answer": "1",
            "reference": 1, "correct": correct, "score": 0.5, "generated_tokens": generated,
            "forwarded_tokens": forwarded, "expansions": 1, "parameters": PARAMETERS,
            "flops": 2 * PARAMETERS * forwarded, "seconds": seconds, "cpu_seconds": seconds / 2,
            "unspent_tokens": 3 if method == "greedy" and problem_id == 1 else 0, "text": "Answer: 1."}


def hand_made_records() -> list[dict]:
    """Greedy: one point. Best-of-N: n = 2 / 8 / 32 at 1e6 / 1e7 / 1e8 FLOPs, accuracy 1/4, 2/4, 2/4."""
    records = [record("greedy", {"search.method": "greedy"}, 0, 0, True, 12, 10, 0.5),
               record("greedy", {"search.method": "greedy"}, 1, 0, False, 22, 20, 1.5)]
    for n, forwarded, wins in ((2, 5_000, 1), (8, 50_000, 2), (32, 500_000, 2)):
        point = {"search.method": "best_of_n", "search.best_of_n.n": n}
        for index, (problem, seed) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
            records.append(record("best_of_n", point, problem, seed, index < wins, forwarded, forwarded // 2, 2.0))
    return records


@pytest.fixture
def run_dir(tmp_path):
    path = tmp_path / "run"
    path.mkdir()
    lines = "".join(json.dumps(r) + "\n" for r in hand_made_records())
    (path / "results.jsonl").write_text(lines, encoding="utf-8")
    return path


def test_rows_hold_the_means_of_each_point(run_dir):
    rows = {(r.method, json.dumps(r.point)): r for r in build_report(run_dir).rows}
    greedy = rows["greedy", '{"search.method": "greedy"}']
    assert (greedy.accuracy, greedy.problems, greedy.seeds) == (0.5, 2, 1)
    assert (greedy.generated_tokens, greedy.forwarded_tokens, greedy.flops, greedy.seconds) == (15.0, 17.0, 3400.0, 1.0)
    big = rows["best_of_n", '{"search.method": "best_of_n", "search.best_of_n.n": 32}']
    assert (big.accuracy, big.problems, big.seeds, big.flops, big.generated_tokens) == (0.5, 2, 2, 1e8, 250_000.0)


def test_rows_are_sorted_by_method_then_compute(run_dir):
    rows = build_report(run_dir).rows
    assert [(r.method, r.flops) for r in rows] == [("best_of_n", 1e6), ("best_of_n", 1e7), ("best_of_n", 1e8),
                                                   ("greedy", 3400.0)]


def test_fit_matches_numpy_polyfit_on_log_compute(run_dir):
    fit = build_report(run_dir).fits["best_of_n"]
    b, a = np.polyfit([6.0, 7.0, 8.0], [0.25, 0.5, 0.5], 1)
    assert (fit.a, fit.b) == pytest.approx((a, b), abs=1e-12)
    assert (fit.a, fit.b, fit.r2) == pytest.approx((-11 / 24, 1 / 8, 0.75), abs=1e-12)  # by hand
    assert fit.note == ""


def test_method_with_one_compute_value_gets_no_fit(run_dir):
    fit = build_report(run_dir).fits["greedy"]
    assert (fit.a, fit.b, fit.r2, fit.note) == (None, None, None, NO_FIT_NOTE)


def test_constant_accuracy_leaves_r2_undefined():
    fit = fit_scaling([10.0, 100.0], [0.5, 0.5])
    assert (fit.a, fit.b, fit.r2) == pytest.approx((0.5, 0.0, None), abs=1e-12)
    assert fit.note == "accuracy is the same at every compute: R^2 undefined"


def test_points_without_compute_are_left_out_of_the_fit():
    assert fit_scaling([0.0, 100.0], [0.1, 0.5]).note == NO_FIT_NOTE


def test_cli_prints_the_table(run_dir):
    code, out, _ = run_cli("report", run_dir)
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["method", "point", "accuracy", "problems", "seeds", "gen", "tokens", "fwd", "tokens",
                                "FLOPs", "seconds", "cpu", "s", "unspent", "fit", "a", "fit", "b", "R^2"]
    assert lines[1].split() == ["best_of_n", "best_of_n.n=2", "0.250", "2", "2", "2500.0", "5000.0", "1e+06", "2.000",
                                "1.000", "0.0", "-0.4583", "0.1250", "0.7500"]
    assert lines[4].split() == ["greedy", "-", "0.500", "2", "1", "15.0", "17.0", "3.4e+03", "1.000", "0.500", "1.5"]
    assert lines[5:] == [f"greedy: {NO_FIT_NOTE}", f"wrote {run_dir / 'report.md'} and {run_dir / 'scaling.png'}"]


def test_cli_json_has_the_same_rows(run_dir):
    code, out, _ = run_cli("report", run_dir, "--json")
    data = json.loads(out)
    assert code == 0 and len(data["rows"]) == 4
    assert data["rows"][3] == {
        "method": "greedy", "point": {"search.method": "greedy"}, "accuracy": 0.5, "problems": 2, "seeds": 1,
        "generated_tokens": 15.0, "forwarded_tokens": 17.0, "flops": 3400.0, "seconds": 1.0,
        "cpu_seconds": 0.5, "unspent_tokens": 1.5, "fit_a": None, "fit_b": None, "fit_r2": None}
    assert data["fits"]["best_of_n"]["r2"] == pytest.approx(0.75, abs=1e-12)
    assert data["fits"]["greedy"]["note"] == NO_FIT_NOTE


def test_cli_writes_the_markdown_table_and_the_png(run_dir):
    assert run_cli("report", run_dir)[0] == 0
    markdown = (run_dir / "report.md").read_text(encoding="utf-8").splitlines()
    assert markdown[0] == ("| method | point | accuracy | problems | seeds | gen tokens | fwd tokens | FLOPs | seconds "
                           "| cpu s | unspent | fit a | fit b | R^2 |")
    assert markdown[2] == ("| best_of_n | best_of_n.n=2 | 0.250 | 2 | 2 | 2500.0 | 5000.0 | 1e+06 | 2.000 | 1.000 "
                           "| 0.0 | -0.4583 | 0.1250 | 0.7500 |")
    assert len(markdown) == 2 + 4 + 2  # header, rule, rows, blank line, greedy's note
    png = (run_dir / "scaling.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_a_partial_last_line_is_ignored_and_left_alone(run_dir):
    results = run_dir / "results.jsonl"
    results.write_bytes(results.read_bytes() + b'{"problem_id": 9, "po')
    before = results.read_bytes()
    assert len(build_report(run_dir).rows) == 4
    assert results.read_bytes() == before


def test_report_of_a_missing_directory_is_refused(tmp_path):
    code, out, err = run_cli("report", tmp_path / "nowhere")
    assert (code, out) == (2, "")
    assert err == f"error: run directory {tmp_path / 'nowhere'} does not exist: pass the output_dir of a run\n"


def test_report_of_a_run_without_results_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"holds no results yet: run the experiment first$"):
        build_report(tmp_path)
