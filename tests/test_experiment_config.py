"""Experiment configs: defaults, validation messages, overrides, sweeps, problem loading, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from experiment_helpers import run_cli, write_yaml

from reflective_search.errors import ConfigError, ProblemError
from reflective_search.experiments.problems import TASKS, CountdownOptions, load_problems
from reflective_search.experiments.spec import ExecutorSpec, ExperimentSpec, load_experiment, parse_override, resolved_dict, spec_from_dict
from reflective_search.experiments.sweep import point_configs, sweep_points
from reflective_search.solution import Solution, Stats


def solution_with(text: str, answer: str | None) -> Solution:
    return Solution("p", "greedy", answer, text, 0.5, Stats(0, 0, 0, 0.0), tree=None)


# -- defaults and round trips -------------------------------------------------------------------


def ship_only(monkeypatch, tmp_path, *names: str) -> None:
    """Pretend the package ships exactly ``names``."""
    import reflective_search.shipped

    for name in names:
        (tmp_path / "shipped" / name).mkdir(parents=True)
    monkeypatch.setattr(reflective_search.shipped, "SHIPPED_DIR", tmp_path / "shipped")


def test_empty_config_gives_the_documented_defaults(monkeypatch, tmp_path):
    ship_only(monkeypatch, tmp_path)
    spec = spec_from_dict({})
    assert (spec.model, spec.seeds, spec.sweep, spec.executor, spec.batch_size) == (None, (0,), (), ExecutorSpec(), 8)
    assert spec.executor == ExecutorSpec(kind="local", address=None, workers=1, cpus_per_worker=1, gpus_per_worker=0)
    assert spec.output_dir == "runs/experiment"
    problems = spec.problems
    assert (problems.file, problems.generator, problems.count, problems.seed, problems.limit, problems.task) == (
        None, "countdown", 20, 0, None, "countdown")
    assert problems.options == CountdownOptions(num_numbers=3, low=1, high=9, target_low=1, target_high=100)


def test_omitted_model_resolves_to_the_shipped_default(monkeypatch, tmp_path):
    ship_only(monkeypatch, tmp_path, "countdown-smol")
    assert spec_from_dict({}).model == "countdown-smol"
    ship_only(monkeypatch, tmp_path / "other", "countdown-tiny")  # another shipped model never stands in for it
    assert spec_from_dict({}).model is None


def test_model_directory_is_made_absolute(monkeypatch, tmp_path):
    (tmp_path / "my-model").mkdir()
    monkeypatch.chdir(tmp_path)
    assert spec_from_dict({"model": "my-model"}).model == str(tmp_path / "my-model")


def test_output_dir_defaults_to_runs_and_the_config_name(tmp_path):
    assert load_experiment(write_yaml(tmp_path / "my_run.yaml", {})).output_dir == "runs/my_run"


def test_seeds_default_to_the_search_seed():
    assert spec_from_dict({"search": {"seed": 7}}).seeds == (7,)


def test_resolved_config_loads_back_to_the_same_spec():
    spec = spec_from_dict({"search": {"method": "beam"}, "seeds": [1, 2], "problems": {"count": 5},
                           "sweep": {"search.beam.width": [2, 4]}, "workers": 2})
    assert spec_from_dict(resolved_dict(spec)) == spec


def test_top_level_workers_is_the_old_spelling_of_executor_workers():
    assert spec_from_dict({"workers": 3}).executor == ExecutorSpec(workers=3)
    assert "workers" not in resolved_dict(spec_from_dict({"workers": 3}))  # config.yaml holds executor.workers only


def test_ray_executor_keys_load():
    executor = {"kind": "ray", "address": "127.0.0.1:6379", "workers": 4, "cpus_per_worker": 2, "gpus_per_worker": 1}
    assert spec_from_dict({"executor": executor}).executor == ExecutorSpec("ray", "127.0.0.1:6379", 4, 2, 1.0)


def test_problem_file_path_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = spec_from_dict({"problems": {"file": "problems.jsonl"}})
    assert spec.problems.file == str(tmp_path / "problems.jsonl")


def test_a_problem_file_is_checked_against_its_answers_unless_it_names_a_task():
    assert spec_from_dict({"problems": {"file": "p.jsonl"}}).problems.task == "math"
    assert spec_from_dict({"problems": {"file": "p.jsonl", "task": "countdown"}}).problems.task == "countdown"


# -- refused configs (each message exact) -------------------------------------------------------

REFUSED = {
    "unknown top-level key": (
        {"worker": 2},
        "unknown key 'worker' (did you mean 'workers'?); valid keys: model, problems, search, seeds, sweep, "
        "output_dir, executor, batch_size, workers"),
    "unknown search key": (
        {"search": {"mcts": {"childrn": 2}}},
        "unknown key 'search.mcts.childrn' (did you mean 'children'?); valid keys: children, root_children, "
        "c_puct, batch_leaves, backup, aggregate, virtual_loss, resample, root, gumbel, widen"),
    "unknown problems key": (
        {"problems": {"generater": "countdown"}},
        "unknown key 'problems.generater' (did you mean 'generator'?); valid keys: file, generator, count, seed, "
        "limit, task, options"),
    "unknown generator option": (
        {"problems": {"options": {"num_number": 4}}},
        "unknown key 'problems.options.num_number' (did you mean 'num_numbers'?); valid keys: num_numbers, low, "
        "high, target_low, target_high"),
    "wrong type": ({"workers": "two"}, "workers: 'two' is not allowed; expected an integer >= 1"),
    "workers below one": ({"workers": 0}, "workers: 0 is not allowed; expected an integer >= 1"),
    "executor workers below one": (
        {"executor": {"workers": 0}}, "executor.workers: 0 is not allowed; expected an integer >= 1"),
    "unknown executor key": (
        {"executor": {"kind": "ray", "cpu_per_worker": 2}},
        "unknown key 'executor.cpu_per_worker' (did you mean 'cpus_per_worker'?); valid keys: kind, address, "
        "workers, cpus_per_worker, gpus_per_worker"),
    "unknown executor kind": ({"executor": {"kind": "dask"}}, "executor.kind: 'dask' is not allowed; expected local | ray"),
    "address with kind local": (
        {"executor": {"address": "auto"}},
        "executor.address applies to a Ray cluster: set executor.kind: ray or drop it"),
    "gpus with kind local": (
        {"executor": {"gpus_per_worker": 1}},
        "executor.gpus_per_worker applies to a Ray cluster: set executor.kind: ray or drop it"),
    "workers set twice": (
        {"workers": 2, "executor": {"workers": 2}},
        "workers is set twice: drop the top-level workers and keep executor.workers"),
    "batch size below one": ({"batch_size": 0}, "batch_size: 0 is not allowed; expected an integer >= 1"),
    "search value out of range": (
        {"search": {"sampling": {"top_p": 0}}}, "sampling.top_p: 0.0 is not allowed; expected a number in (0, 1]"),
    "search not a mapping": ({"search": "mcts"}, "search: expected a mapping of keys, got str"),
    "empty seeds": ({"seeds": []}, "seeds: expected a non-empty list of integers, got []"),
    "seed not an integer": ({"seeds": [1, "x"]}, "seeds: 'x' is not allowed; expected integers"),
    "repeated seed": ({"seeds": [1, 1]}, "seeds: [1, 1] repeats a seed; list each once"),
    "zero count": ({"problems": {"count": 0}}, "problems.count: 0 is not allowed; expected an integer >= 1"),
    "unknown task": ({"problems": {"task": "chess"}}, "problems.task: 'chess' is not allowed; expected countdown | arithmetic | math"),
    "generator option out of range": (
        {"problems": {"options": {"num_numbers": 7}}},
        "problems.options.num_numbers: 7 is not allowed; expected an integer in 2..5"),
    "file and generator": (
        {"problems": {"file": "a.jsonl", "generator": "countdown"}}, "problems: set either file or generator, not both"),
    "count with a file": (
        {"problems": {"file": "a.jsonl", "count": 3}},
        "problems.count applies to a generator; with a file use problems.limit"),
    "task against the generator": (
        {"problems": {"task": "math"}},
        "problems.task: generator countdown is graded by task countdown; drop problems.task"),
    "missing model": (
        {"model": "/nonexistent/model"},
        "model: /nonexistent/model is neither a directory nor a shipped model"),
    "empty sweep list": ({"sweep": {"search.budget.tokens": []}},
                         "sweep.search.budget.tokens: expected a non-empty list of values, got []"),
    "empty sweep group list": (
        {"sweep": []}, "sweep: an empty list; give a mapping of key -> values, or a list of such mappings"),
    "unknown sweep key": (
        {"sweep": {"search.budget.tokns": [1, 2]}},
        "sweep: unknown key 'search.budget.tokns' (did you mean 'search.budget.tokens'?)"),
    "sweep key outside search": (
        {"sweep": {"workers": [1, 2]}},
        "sweep: key 'workers' is not a search setting; sweep keys look like search.budget.tokens"),
    "sweep of a settings group": (
        {"sweep": [{"search.mcts": [1]}]},
        "sweep[0]: search.mcts is a group of settings; sweep one of them, e.g. search.mcts.children"),
    "sweep of the seed": ({"sweep": {"search.seed": [1, 2]}},
                          "sweep: sweep search.seed through the top-level seeds: list instead"),
    "impossible sweep value": (
        {"sweep": {"search.budget.tokens": [8, 0]}},
        'sweep point {"search.budget.tokens": 0}: budget.tokens: 0 is not allowed; expected an integer >= 1 or null'),
}


@pytest.mark.parametrize("data, message", REFUSED.values(), ids=REFUSED.keys())
def test_bad_config_is_refused_with_its_message(data, message):
    with pytest.raises(ConfigError) as error:
        spec_from_dict(data)
    assert str(error.value).startswith(message)


# -- overrides ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("search.mcts.children=2", ("search.mcts.children", 2)),
    ("workers=2", ("workers", 2)),
    ("model=null", ("model", None)),
    ("search.sampling.temperature=0.5", ("search.sampling.temperature", 0.5)),
    ("sweep.search.best_of_n.n=[2, 8]", ("sweep.search.best_of_n.n", [2, 8])),
])
def test_override_value_is_read_as_yaml(text, expected):
    assert parse_override(text) == expected


def test_overrides_replace_values_of_the_yaml_file(tmp_path):
    path = write_yaml(tmp_path / "c.yaml", {"search": {"method": "mcts", "mcts": {"children": 4}}, "workers": 1})
    spec = load_experiment(path, ["search.mcts.children=2", "workers=2", "sweep.search.budget.tokens=[64, 128]"])
    assert (spec.search.mcts.children, spec.executor.workers) == (2, 2)
    assert spec.sweep == ((("search.budget.tokens", (64, 128)),),)


def test_override_without_equals_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^override 'workers' must look like key=value"):
        load_experiment(write_yaml(tmp_path / "c.yaml", {}), ["workers"])


def test_override_below_a_plain_value_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"^override model.path: model is not a mapping"):
        load_experiment(write_yaml(tmp_path / "c.yaml", {"model": "x"}), ["model.path=y"])


def test_override_of_an_unknown_key_names_the_nearest(tmp_path):
    with pytest.raises(ConfigError, match=r"^unknown key 'search.mcts.childs' \(did you mean 'children'\?\)"):
        load_experiment(write_yaml(tmp_path / "c.yaml", {}), ["search.mcts.childs=2"])


# -- sweeps ------------------------------------------------------------------------------------


def test_sweep_covers_the_product_of_its_keys():
    spec = spec_from_dict({"sweep": {"search.method": ["best_of_n", "majority"], "search.best_of_n.n": [2, 8, 32]}})
    assert sweep_points(spec.sweep) == [
        {"search.method": m, "search.best_of_n.n": n} for m in ("best_of_n", "majority") for n in (2, 8, 32)]


def test_sweep_groups_are_joined_without_repeats():
    spec = spec_from_dict({"sweep": [{"search.method": ["greedy", "beam"]}, {"search.method": ["greedy"]},
                                     {"search.method": ["mcts"], "search.budget.tokens": [64, 128]}]})
    assert sweep_points(spec.sweep) == [
        {"search.method": "greedy"}, {"search.method": "beam"},
        {"search.method": "mcts", "search.budget.tokens": 64}, {"search.method": "mcts", "search.budget.tokens": 128}]


def test_each_point_gets_its_values_on_top_of_the_search_section():
    spec = spec_from_dict({"search": {"mcts": {"children": 3}}, "sweep": {"search.budget.tokens": [64, 128]}})
    configs = point_configs(spec.search, spec.sweep)
    assert [(c.budget.tokens, c.mcts.children) for _, c in configs] == [(64, 3), (128, 3)]


def test_no_sweep_is_one_empty_point():
    spec = ExperimentSpec()
    assert [point for point, _ in point_configs(spec.search, spec.sweep)] == [{}]


# -- problems ----------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problems_from(path: Path, **problems) -> list:
    return load_problems(spec_from_dict({"problems": {"file": str(path), **problems}}).problems)


def test_jsonl_problems_keep_ids_and_positions(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [
        '{"problem": "Numbers: 1 2. Target: 3.", "answer": 3}', "",
        '{"id": "b", "problem": "Numbers: 2 2. Target: 4.", "answer": 4}',
        '{"problem": "Numbers: 3 2. Target: 6."}'])
    problems = problems_from(path, task="countdown")
    assert [(p.problem_id, p.text) for p in problems] == [
        (0, "Numbers: 1 2. Target: 3."), ("b", "Numbers: 2 2. Target: 4."), (2, "Numbers: 3 2. Target: 6.")]
    assert problems[1].record == {"id": "b", "problem": "Numbers: 2 2. Target: 4.", "answer": 4}


def test_limit_keeps_the_first_problems(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [json.dumps({"problem": f"Numbers: {n} 1. Target: {n + 1}."})
                                              for n in range(1, 6)])
    assert [p.problem_id for p in problems_from(path, limit=2, task="countdown")] == [0, 1]


def test_generator_problems_are_reproducible_countdown_records():
    spec = spec_from_dict({"problems": {"count": 3, "seed": 5, "options": {"num_numbers": 4}}})
    first, second = load_problems(spec.problems), load_problems(spec.problems)
    assert first == second and [p.problem_id for p in first] == [0, 1, 2]
    assert all(len(p.text.split("Target")[0].split()) == 5 for p in first)  # "Numbers:" and four numbers
    assert all(p.record["answer"] == int(p.text.rsplit(" ", 1)[1].rstrip(".")) for p in first)


BAD_LINES = {
    "not JSON": (['{"problem": "Numbers: 1 2. Target: 3."}', "{oops"], "line 2: not valid JSON"),
    "not an object": (['["Numbers: 1 2. Target: 3."]'],
                      'line 1: expected a JSON object like {"problem": ..., "answer": ...}, got list'),
    "no problem field": (['{"question": "Numbers: 1 2. Target: 3."}'], "line 1: the record has no 'problem' field"),
    "empty problem": (['{"problem": "  "}'], "line 1: 'problem' must be non-empty text"),
    "repeated id": (['{"id": 1, "problem": "Numbers: 1 2. Target: 3."}', '{"id": 1, "problem": "Numbers: 1 3. Target: 4."}'],
                    "line 2: id 1 is already used on line 1: ids must be unique"),
    "not countdown": (['{"problem": "What is 2+2?", "answer": 4}'],
                      "line 1: the problem is not in the countdown format ('Numbers: 3 7 8. Target: 29.'); "
                      "drop problems.task: countdown to check other problems against their answers"),
}


@pytest.mark.parametrize("lines, message", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_bad_problem_line_is_refused_with_its_number(tmp_path, lines, message):
    path = write_lines(tmp_path / "p.jsonl", lines)
    with pytest.raises(ProblemError) as error:
        problems_from(path, task="countdown")
    assert str(error.value).startswith(f"{path} {message}")


NO_ANSWER = ("the record has no 'answer' to check against: add one (a problems file is checked against its answers "
             "unless problems.task names another task)")


@pytest.mark.parametrize("task", [{}, {"task": "math"}], ids=["no task", "task math"])
def test_a_record_without_an_answer_is_refused_with_its_file_and_line(tmp_path, task):
    path = write_lines(tmp_path / "p.jsonl", ['{"problem": "Evaluate: 3+4*2", "answer": "11"}', "",
                                              '{"problem": "Evaluate: 2+2", "answer": null}'])
    with pytest.raises(ProblemError) as error:
        problems_from(path, **task)
    assert str(error.value) == f"{path} line 3: {NO_ANSWER}"


def test_math_problems_load_with_no_task(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", ['{"problem": "Evaluate: 3+4*2", "answer": "11"}'])
    assert [(p.problem_id, p.text, p.record["answer"]) for p in problems_from(path)] == [(0, "Evaluate: 3+4*2", "11")]


def test_missing_problem_file_is_refused(tmp_path):
    with pytest.raises(ProblemError, match=r"^cannot read problems file .*none.jsonl: No such file or directory$"):
        problems_from(tmp_path / "none.jsonl")


def test_empty_problem_file_is_refused(tmp_path):
    path = write_lines(tmp_path / "p.jsonl", [""])
    with pytest.raises(ProblemError, match="holds no problems"):
        problems_from(path)


# -- answer checkers ---------------------------------------------------------------------------


def test_countdown_task_checks_the_final_expression():
    record = {"problem": "Numbers: 3 7 8. Target: 29.", "answer": 29}
    assert TASKS["countdown"].is_correct(record, solution_with("7*3=21, left 8 21.\n\nAnswer: 7*3+8.\n\n", "7*3+8"))
    assert not TASKS["countdown"].is_correct(record, solution_with("Answer: 7*8+3.\n\n", "7*8+3"))


def test_math_task_compares_answers_by_value():
    record = {"problem": "Half of one?", "answer": "0.5"}
    assert TASKS["math"].is_correct(record, solution_with("so \\boxed{\\frac{1}{2}}", "\\frac{1}{2}"))
    assert TASKS["math"].is_correct(record, solution_with("Answer: 1/2.", None))
    assert not TASKS["math"].is_correct(record, solution_with("Answer: 2.", "2"))


# -- bad input through the real command line: one line, exit 2, nothing written ---------------


def refused_run(tmp_path, config: dict | str, *overrides: str) -> str:
    path = tmp_path / "c.yaml"
    if isinstance(config, str):
        path.write_text(config, encoding="utf-8")
    else:
        write_yaml(path, config)
    out_dir = tmp_path / "out"
    code, out, err = run_cli("run", path, f"output_dir={out_dir}", *overrides)
    assert (code, out, not out_dir.exists()) == (2, "", True)
    assert err.count("\n") == 1 and err.startswith("error: ")
    return err.removeprefix("error: ").rstrip("\n")


def test_cli_refuses_malformed_yaml_naming_the_line(tmp_path):
    message = refused_run(tmp_path, "workers: 1\nsearch: {method: mcts\n")
    assert message == f"{tmp_path / 'c.yaml'} at line 3: expected ',' or '}}', but got '<stream end>'"


def test_cli_refuses_an_unknown_key(tmp_path):
    assert refused_run(tmp_path, {"seed": [1]}).startswith("unknown key 'seed' (did you mean 'seeds'?)")


def test_cli_refuses_a_missing_problems_file(tmp_path):
    message = refused_run(tmp_path, {"problems": {"file": str(tmp_path / "none.jsonl")}})
    assert message == f"cannot read problems file {tmp_path / 'none.jsonl'}: No such file or directory"


def test_cli_refuses_a_problem_line_that_is_not_an_object(tmp_path):
    problems = write_lines(tmp_path / "p.jsonl", ['{"problem": "Numbers: 1 2. Target: 3.", "answer": 3}',
                                                  '"Numbers: 1 2"'])
    message = refused_run(tmp_path, {"problems": {"file": str(problems)}})
    assert message == f'{problems} line 2: expected a JSON object like {{"problem": ..., "answer": ...}}, got str'


def test_cli_refuses_an_output_dir_that_cannot_be_written(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory", encoding="utf-8")
    write_yaml(tmp_path / "c.yaml", {"problems": {"count": 1}})
    code, out, err = run_cli("run", tmp_path / "c.yaml", f"output_dir={blocker / 'run'}")
    assert (code, out) == (2, "")
    assert err == f"error: output_dir {blocker / 'run'} is not writable (Not a directory): pick another output_dir\n"
    assert blocker.read_text(encoding="utf-8") == "not a directory"


SHIPPED_CONFIGS = sorted((Path(__file__).parent.parent / "search_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_search_config_loads(path):
    from reflective_search.experiments.spec import load_experiment

    spec = load_experiment(path)
    assert str(spec.output_dir) == f"runs/{path.stem}"
    if path.stem in ("greedy", "majority", "best_of_n", "beam", "dvts", "rebase", "mcts"):
        assert spec.search.method == path.stem


def test_the_shipped_configs_are_all_there():
    assert len(SHIPPED_CONFIGS) == 14


def test_cli_refuses_a_record_without_an_answer_before_any_work(tmp_path):
    problems = write_lines(tmp_path / "p.jsonl", ['{"problem": "Evaluate: 3+4*2", "answer": "11"}',
                                                  '{"problem": "Evaluate: 2+2"}'])
    message = refused_run(tmp_path, {"problems": {"file": str(problems)}})
    assert message == f"{problems} line 2: {NO_ANSWER}"
