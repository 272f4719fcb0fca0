"""`reflective-search evaluate`: what it prints and writes."""

from __future__ import annotations

import json
import math

from reflective_search.commands.evaluate import _print_search_table, _without_nan


def test_results_with_nan_become_valid_json():
    results = {"auc": math.nan, "by_position": {0: 0.5, 1: math.nan}, "points": [1.0, math.nan], "name": "x"}
    text = json.dumps(_without_nan(results), allow_nan=False)
    assert json.loads(text) == {"auc": None, "by_position": {"0": 0.5, "1": None}, "points": [1.0, None], "name": "x"}


def test_search_table_reports_pass_at_the_sample_count_asked_for(capsys):
    row = {"greedy": {"accuracy": 0.25, "tokens": 50.0, "seconds": 0.1}, "pass@4": 0.5,
           "trajectory_auc_sprm": 0.6, "trajectory_auc_logprob": 0.7, "step_auc_by_position": {0: 0.55}}
    _print_search_table(3, row, samples=4)
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  pass@4 0.500  trajectory AUC sprm 0.600 logprob 0.700  step AUC by position 0:0.550")
