"""`reflective-search evaluate`: what it prints and writes."""

from __future__ import annotations

import json
import math

import torch

from reflective_search.commands.evaluate import _print_search_table, _without_nan


def test_results_with_nan_become_valid_json():
    results = {"auc": math.nan, "by_position": {0: 0.5, 1: math.nan}, "points": [1.0, math.nan], "name": "x"}
    text = json.dumps(_without_nan(results), allow_nan=False)
    assert json.loads(text) == {"auc": None, "by_position": {"0": 0.5, "1": None}, "points": [1.0, None], "name": "x"}


def test_printed_json_keeps_each_list_of_numbers_on_one_line():
    from reflective_search.commands.evaluate import _flat_number_lists

    results = {"mcts": {"correct": [0, 1, 1], "ci": [-0.05, 1e-05], "labels": ["a", "b"], "none": [None, 0.5],
                        "text": "a string [1,2] stays as it is"}}
    text = _flat_number_lists(json.dumps(results, indent=1))
    assert json.loads(text) == results
    assert '"correct": [0, 1, 1],' in text and '"ci": [-0.05, 1e-05],' in text and '"none": [null, 0.5]' in text
    assert '"labels": [\n   "a",' in text  # lists of strings keep their lines


def test_search_table_reports_pass_at_the_sample_count_asked_for(capsys):
    row = {"greedy": {"accuracy": 0.25, "tokens": 50.0, "seconds": 0.1}, "pass@4": 0.5,
           "trajectory_auc_sprm": 0.6, "trajectory_auc_logprob": 0.7, "step_auc_by_position": {0: 0.55}}
    _print_search_table(3, row, samples=4)
    assert capsys.readouterr().out.splitlines()[-1] == (
        "  pass@4 0.500  trajectory AUC sprm 0.600 logprob 0.700  step AUC by position 0:0.550")


def test_an_evaluation_layers_task_then_model_then_overrides_and_nothing_after(tiny_llama):
    import dataclasses

    from reflective_search import ReflectiveSearch
    from reflective_search.train.evaluate import search_config
    from reflective_search.train.tasks import get_task

    chosen = (("sampling.temperature", 0.9), ("mcts.children", 3), ("sampling.max_steps", 5))
    model = tiny_llama.with_head(tiny_llama.head, dataclasses.replace(tiny_llama.settings, search_defaults=chosen))
    config = ReflectiveSearch(model, search_config(model, get_task("countdown"), {"mcts.children": 2})).config
    assert (config.sampling.temperature, config.mcts.children) == (0.9, 2)  # the model's choice, the override
    assert (config.sampling.max_step_tokens, config.sampling.max_steps) == (32, 5)  # the task's, the model's
    # An override equal to the library's default still wins over the model's choice.
    explicit = search_config(model, get_task("countdown"), {"sampling.temperature": 0.7})
    assert ReflectiveSearch(model, explicit).config.sampling.temperature == 0.7


def test_evaluate_search_runs_only_the_methods_asked_for(tmp_path, capsys):
    from reflective_search.cli import main

    assert main(["evaluate", "search", "--model", "countdown-tiny", "--problems", "2", "--methods", "greedy", "mcts",
                 "--mcts", "budget.tokens=60", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "search.json").read_text())["3 numbers"]
    assert set(row) == {"greedy", "mcts", "paired"}
    assert row["mcts"]["overrides"] == {"sampling.temperature": 0.7, "budget.tokens": 60}
    assert len(row["mcts"]["correct"]) == 2 and row["mcts"]["accuracy"] == sum(row["mcts"]["correct"]) / 2
    assert row["mcts"]["pass@tree"] >= row["mcts"]["accuracy"] and row["mcts"]["finished_paths"] >= 1
    assert "  mcts trees: pass@tree " in capsys.readouterr().out
    assert (tmp_path / "search.png").is_file()


def test_evaluate_search_pairs_every_two_methods_on_the_same_problems(tmp_path, capsys):
    from reflective_search.cli import main

    assert main(["evaluate", "search", "--model", "countdown-tiny", "--problems", "3", "--methods", "best_of_n", "mcts",
                 "--samples", "2", "--mcts", "budget.tokens=60", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "search.json").read_text())["3 numbers"]
    best, mcts = row["best_of_2_sprm"]["correct"], row["mcts"]["correct"]
    assert list(row["paired"]) == ["best_of_2_sprm - mcts"]  # the log-prob ranking has no engine verdicts
    paired = row["paired"]["best_of_2_sprm - mcts"]
    assert paired["difference"] == (sum(best) - sum(mcts)) / 3
    assert paired["ci"][0] <= paired["difference"] <= paired["ci"][1]
    assert "correct" not in row["best_of_2_logprob"]  # another ranking of the same samples: no engine verdicts
    assert f"  best_of_2_sprm - mcts: {paired['difference']:+.3f} (paired 95% CI" in capsys.readouterr().out


def test_evaluate_search_runs_beam_dvts_and_rebase_with_their_overrides(tmp_path):
    from reflective_search.cli import main

    assert main(["evaluate", "search", "--model", "countdown-tiny", "--problems", "2", "--methods", "beam", "dvts",
                 "rebase", "--beam", "beam.width=2", "beam.expand=2", "--dvts", "dvts.n=4", "dvts.width=2",
                 "--rebase", "rebase.width=2", "--out", str(tmp_path)]) == 0
    row = json.loads((tmp_path / "search.json").read_text())["3 numbers"]
    assert row["beam"]["overrides"] == {"sampling.temperature": 0.7, "beam.width": 2, "beam.expand": 2}
    assert row["rebase"]["overrides"] == {"sampling.temperature": 0.7, "rebase.width": 2}
    assert all(len(row[m]["correct"]) == 2 and row[m]["tokens"] > 0 for m in ("beam", "dvts", "rebase"))
    assert set(row["paired"]) == {"beam - dvts", "beam - rebase", "dvts - rebase"}


def test_evaluate_search_refuses_a_bad_override_before_loading_a_model(capsys):
    from reflective_search.cli import main

    assert main(["evaluate", "search", "--methods", "beam", "--beam", "beam.widht=2"]) != 0
    assert "unknown key 'beam.widht' (did you mean 'width'?)" in capsys.readouterr().err


def test_a_paired_difference_resamples_problems_for_both_methods():
    from reflective_search.train.metrics import paired_difference

    assert paired_difference([True, True], [False, False]) == {"difference": 1.0, "ci": [1.0, 1.0]}
    mixed = paired_difference([1, 1, 0, 1], [0, 1, 0, 0])
    assert mixed["difference"] == 0.5 and 0.0 <= mixed["ci"][0] < 0.5 < mixed["ci"][1] <= 1.0
    # Resampling problems, not verdicts: a method against itself differs by exactly 0 in every draw.
    assert paired_difference([1, 0, 1], [1, 0, 1]) == {"difference": 0.0, "ci": [0.0, 0.0]}


def _other_head(model, seed: int):
    """The same model wearing a freshly initialised head."""
    from reflective_search.model.head import build_head

    torch.manual_seed(seed)
    return model.with_head(build_head(model.hidden_size, model.settings.head_width), model.settings)


def test_models_read_the_same_features_only_with_one_backbone_layer_and_step_rule():
    import dataclasses

    from reflective_search.model.reflective import ReflectiveModel
    from reflective_search.train.evaluate import reads_same_features

    model = ReflectiveModel.from_pretrained("countdown-tiny")
    assert reads_same_features(model, _other_head(model, 1))
    other_layer = model.with_head(model.head, dataclasses.replace(model.settings, feature_layers=(0,)))
    assert not reads_same_features(model, other_layer)
    blocks = model.with_head(model.head, dataclasses.replace(
        model.settings, search_defaults=(*model.settings.search_defaults, ("sampling.step.kind", "tokens"),
                                         ("sampling.step.size", 4))))
    assert not reads_same_features(model, blocks)
    changed = ReflectiveModel.from_pretrained("countdown-tiny")
    with torch.no_grad():
        next(changed.backbone.parameters()).view(-1)[0] += 1e-3
    assert not reads_same_features(model, changed)


def test_evaluate_heads_scores_each_head_on_the_same_samples(tmp_path, capsys):
    from reflective_search.cli import main
    from reflective_search.model.reflective import ReflectiveModel

    model = ReflectiveModel.from_pretrained("countdown-tiny")
    _other_head(model, 1).save_pretrained(tmp_path / "other")
    model.save_pretrained(tmp_path / "copy")
    samples, out = tmp_path / "samples.jsonl", tmp_path / "out"
    names = ["countdown-tiny", str(tmp_path / "other"), str(tmp_path / "copy")]
    args = ["evaluate", "heads", *[arg for name in names for arg in ("--model", name)],
            "--problems", "3", "--samples", "2", "--trajectories", str(samples), "--out", str(out)]
    assert main(args) == 0
    result = json.loads((out / "heads.json").read_text())
    first, other, again = (result[f"3 numbers | {name}"] for name in names)
    # The samples, and so the log-prob ranking, are shared; the heads' own numbers differ.
    assert first["trajectory_auc_logprob"] == other["trajectory_auc_logprob"]
    assert first == again and first["trajectory_auc"] != other["trajectory_auc"]
    assert {k: first[k] for k in ("self_consistency", "pass_at_n", "sample_accuracy")} == \
        {k: other[k] for k in ("self_consistency", "pass_at_n", "sample_accuracy")}
    assert f"self-consistency {first['self_consistency']:.3f}, pass@2 {first['pass_at_n']:.3f})" in capsys.readouterr().out
    assert len(samples.read_text().splitlines()) == 6


def _tree(steps_by_parent: dict[int, list[tuple[str, bool]]]):
    """A tree from {parent: [(step text, terminal), ...]}, parents before their children."""
    from reflective_search.interface import ChildStep, StepEnd
    from reflective_search.tree import Tree

    tree = Tree([1], "p")
    for parent, steps in steps_by_parent.items():
        children = tree.add_children(parent, [ChildStep((2,), text, 0.0, 0.5, StepEnd.DELIMITER) for text, _ in steps],
                                     [1 / len(steps)] * len(steps))
        for child, (_, terminal) in zip(children, steps):
            tree.terminal[child] = terminal
    return tree


def test_tree_coverage_counts_finished_paths_and_any_correct_one():
    from reflective_search.solution import Solution, Stats
    from reflective_search.train.evaluate import tree_coverage
    from reflective_search.train.tasks import TrainingProblem, get_task

    step, right, wrong = "8*3=24, left 7 24.\n\n", "Answer: 8*3+7.\n\n", "Answer: 8*3-7.\n\n"
    # Problem 1: one right and one wrong finished path. Problem 2: one wrong finished path, and
    # an open leaf that states the right answer, which does not count (it is not finished).
    one = _tree({0: [(step, False)], 1: [(right, True), (wrong, True)]})
    two = _tree({0: [(wrong, True), (right, False)]})
    solutions = [Solution("p", "mcts", None, "", 0.0, Stats(0, 0, 0, 0.0, duplicate_tokens=d), tree)
                 for tree, d in ((one, 10), (two, 4))]
    problems = [TrainingProblem("Numbers: 3 7 8. Target: 31.")] * 2
    assert tree_coverage(problems, solutions, get_task("countdown")) == {
        "pass@tree": 0.5, "finished_paths": 1.5, "duplicate_tokens": 7.0}


def test_evaluate_search_says_which_defaults_it_searches_with(capsys):
    from reflective_search.cli import main

    assert main(["evaluate", "search", "--model", "countdown-tiny", "--problems", "1", "--methods", "greedy"]) == 0
    assert ("search defaults: sampling.max_step_tokens=32, sampling.max_steps=6 (the countdown task's): "
            "the model carries none") in capsys.readouterr().err.splitlines()


MATH_PROBLEMS = [{"problem": "Evaluate: 2+2", "answer": "4"}, {"problem": "Evaluate: 3+4*2", "answer": "11"}]


def test_calibrate_on_a_task_without_step_labels_prints_no_step_figure(tiny_llama, tmp_path, capsys):
    import re

    from reflective_search.cli import main

    tiny_llama.save_pretrained(tmp_path / "model")
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(json.dumps(r) + "\n" for r in MATH_PROBLEMS), encoding="utf-8")
    assert main(["evaluate", "calibrate", "--model", str(tmp_path / "model"), "--problems-file", str(problems),
                 "--samples", "2", "--temperatures", "1.0", "--out", str(tmp_path / "out")]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("p.jsonl | "))
    assert re.fullmatch(r"p\.jsonl \| greedy \d\.\d{3} \| T=1\.0: sample \d\.\d{3} pass@2 \d\.\d{3} SC \d\.\d{3}", line)
    saved = json.loads((tmp_path / "out" / "calibrate.json").read_text())["p.jsonl"]["T=1.0"]
    assert set(saved) == {"per_sample", "pass@2", "self_consistency"}  # not measured: left out, not 0 or null


def test_calibrate_prints_the_good_step_fraction_where_steps_are_labelled():
    from reflective_search.commands.evaluate import _calibrate_line

    row = {"greedy": 0.5, "T=0.7": {"per_sample": 0.25, "pass@2": 0.5, "self_consistency": 0.5, "positive_steps": 0.75}}
    assert _calibrate_line("3 numbers", row, 2) == \
        "3 numbers | greedy 0.500 | T=0.7: sample 0.250 pass@2 0.500 SC 0.500 good steps 0.750"


def test_head_figures_without_step_labels_leave_the_step_aucs_out():
    from reflective_search.commands.evaluate import _heads_line
    from reflective_search.train.metrics import Scored, head_summary

    records = [Scored(0, (0.9,), (), -1.0, "4", True), Scored(0, (0.2,), (), -2.0, "5", False)]
    summary = head_summary(records)
    assert summary == {"trajectory_auc": 1.0, "best_of_n": 1.0}
    labelled = head_summary([Scored(0, (0.9,), (True,), -1.0, "4", True), Scored(0, (0.2,), (False,), -2.0, "5", False)])
    assert set(labelled) == {"trajectory_auc", "step_auc_pooled", "step_auc_by_position", "step_auc_min_position",
                             "best_of_n"}
    line = _heads_line("p.jsonl | m", {**summary, "trajectory_auc_ci": (0.5, 1.0), "trajectory_auc_logprob": 1.0,
                                       "best_of_n_logprob": 1.0, "self_consistency": 1.0, "pass_at_n": 1.0}, 2)
    assert line == ("p.jsonl | m | trajectory AUC 1.000 [0.500, 1.000] (policy log-prob 1.000) | best-of-2 1.000 "
                    "(log-prob 1.000, self-consistency 1.000, pass@2 1.000)")


def test_search_table_leaves_out_step_aucs_it_did_not_measure(capsys):
    row = {"pass@4": 0.5, "trajectory_auc_sprm": 0.6, "trajectory_auc_logprob": 0.7}
    _print_search_table("p.jsonl", row, samples=4)
    assert capsys.readouterr().out.splitlines()[-1] == "  pass@4 0.500  trajectory AUC sprm 0.600 logprob 0.700"
